"""Fixtures for tests that run the API as a real uvicorn process.

Those tests own their processes (servers, stand-ins) and their own SQLite files, so they
do not depend on the SQL database of the suite; under PostgreSQL (`make test-pg` runs the
whole suite again) they are skipped rather than run twice.
"""

import os
import shutil
import uuid

import pytest

from tests.reliability.servers import UvicornServer, prepare_sqlite, server_env

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")
processes = pytest.mark.skipif(
    ON_POSTGRES, reason="process-level test: runs once, in the SQLite pass of CI"
)

BULK_USERS = 300


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file with NAMED_USERS and BULK_USERS users; copy it per server."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    ids = prepare_sqlite(path, bulk=BULK_USERS)
    return path, ids


@pytest.fixture
def sqlite_copy(sqlite_template, tmp_path):
    path, ids = sqlite_template
    target = tmp_path / "db.sqlite3"
    shutil.copyfile(path, target)
    return target, ids


@pytest.fixture(scope="session")
def standin_uri(mongo_server):
    return mongo_server if isinstance(mongo_server, str) else mongo_server.uri


@pytest.fixture(scope="session")
def prod_server(sqlite_template, standin_uri, tmp_path_factory):
    """DEBUG off, a real SECRET_KEY, CORS configured for one origin, HSTS on, behind a
    trusted proxy (the tests) at 127.0.0.1."""
    if ON_POSTGRES:
        pytest.skip("process-level test: runs once, in the SQLite pass of CI")
    path, ids = sqlite_template
    db = tmp_path_factory.mktemp("prod") / "db.sqlite3"
    shutil.copyfile(path, db)
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"prod_{uuid.uuid4().hex[:8]}",
        CORS_ALLOWED_ORIGINS="https://app.example.com",
        SECURE_HSTS_SECONDS="3600",
        TRUSTED_PROXIES="127.0.0.1",  # the tests play the proxy
    )
    with UvicornServer(env) as server:
        server.ids = ids
        yield server
