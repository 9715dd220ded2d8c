"""`/readyz` checks what requests need: the SQL users table reads and writes.

It used to run `SELECT 1`, which passes on a deleted SQLite file (SQLite silently creates an
empty one) and on a read-only one, while login and assignment answered 503. The faults are
injected into a running server's SQLite file. The tests run as root, where `chmod a-w`
stops no write, so "read-only" is `chattr +i` (immutable, which binds root too; skipped on
a filesystem without it), besides renaming the file away and replacing it with a directory.
"""

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import processes
from tests.reliability.servers import PASSWORD, UvicornServer, server_env


@pytest.fixture
def sqlite_server(sqlite_copy, standin_uri):
    path, _ids = sqlite_copy
    env = server_env(
        DATABASE_URL=f"sqlite:///{path}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"ready_{uuid.uuid4().hex[:8]}",
    )
    with UvicornServer(env) as server:
        yield server, path


def _rename_away(path: Path) -> Callable[[], None]:
    path.rename(path.with_suffix(".away"))

    def restore() -> None:
        path.unlink(missing_ok=True)  # the empty file SQLite created in its place
        path.with_suffix(".away").rename(path)

    return restore


def _replace_with_directory(path: Path) -> Callable[[], None]:
    path.rename(path.with_suffix(".away"))
    path.mkdir()

    def restore() -> None:
        path.rmdir()
        path.with_suffix(".away").rename(path)

    return restore


def _make_immutable(path: Path) -> Callable[[], None]:
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)  # noqa: S603, S607
    if done.returncode != 0:
        pytest.skip(f"chattr +i unsupported here: {done.stderr.decode().strip()}")

    def restore() -> None:
        subprocess.run(["chattr", "-i", str(path)], check=True)  # noqa: S603, S607

    return restore


@processes
@pytest.mark.parametrize(
    "fault", [_rename_away, _replace_with_directory, _make_immutable], ids=lambda f: f.__name__
)
def test_readyz_fails_naming_sql_when_the_sqlite_file_cannot_serve(sqlite_server, fault):
    server, path = sqlite_server
    login = {"username": "regular", "password": PASSWORD}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        # Given the users database broken under the running server
        restore = fault(path)
        try:
            # When readiness is probed
            ready = client.get("/readyz")
            # Then it is not ready and names sql, as login (which needs it) fails
            assert ready.status_code == 503, ready.text
            assert ready.json()["failed"] == ["sql"]
            assert ready.json()["checks"] == {"sql": "unavailable", "mongodb": "ok"}
            assert client.post("/api/auth/login/", json=login).status_code == 503
        finally:
            restore()
        # And it is ready again once the file is back
        assert client.get("/readyz").status_code == 200
        assert client.post("/api/auth/login/", json=login).status_code == 200
    assert "Traceback" not in server.log()
