"""Real processes for the reliability tests and the fuzz driver.

A uvicorn server of `asgi_app.asgi:application` in a subprocess, a migrated SQLite file
with known users, and access tokens minted with the server's signing key (the same claims
`accounts.tokens` writes), so a test can authenticate without touching the server's SQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from devstack.stack import ROOT, UvicornProcess

PROJECT_ROOT = ROOT
# The production-like servers started here sign with this key (DEBUG is off for them).
SECRET_KEY = "reliability-tests-signing-key-" + "x" * 34
PASSWORD = "Correct-Horse-Battery-9"

# Variables that must not leak from the test run into a server under test.
_SCRUB = (
    "DATABASE_URL",
    "MONGODB_URI",
    "MONGODB_DB",
    "DEBUG",
    "SECRET_KEY",
    "JWT_SIGNING_KEY",
    "CORS_ALLOWED_ORIGINS",
    "BENCH_ENDPOINTS",
    "TRUSTED_PROXIES",
)


def server_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "asgi_app.settings",
            "PYTHONPATH": str(PROJECT_ROOT),
            "SECRET_KEY": SECRET_KEY,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "INFO",
            "PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
            "THROTTLE_DISABLED": "1",
            "JWT_ACCESS_MINUTES": "60",
        }
    )
    env.update(overrides)
    return env


_SEED = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.contrib.auth.hashers import make_password
call_command("migrate", verbosity=0, interactive=False)
from accounts.models import User
spec = json.loads(sys.argv[1])
hashed = make_password(spec["password"])
ids = {}
for name, fields in spec["named"].items():
    email = f"{name}@example.com"
    user = User.objects.create(username=name, email=email, password=hashed, **fields)
    ids[name] = user.id
bulk = User.objects.bulk_create(
    User(username=f"bulk{n}", email=f"bulk{n}@example.com", password=hashed)
    for n in range(spec["bulk"])
)
ids["bulk"] = [u.id for u in bulk]
print(json.dumps(ids))
"""

NAMED_USERS = {
    "regular": {},
    "regular2": {},
    "inactive": {"is_active": False},
    "staff": {"is_staff": True},
    "superuser": {"is_staff": True, "is_superuser": True},
}


def prepare_sqlite(path: str | Path, *, bulk: int = 0, env: dict[str, str] | None = None) -> dict:
    """Migrate a fresh SQLite file and create NAMED_USERS plus `bulk` plain users."""
    return prepare_database(f"sqlite:///{path}", bulk=bulk, env=env)


def prepare_database(url: str, *, bulk: int = 0, env: dict[str, str] | None = None) -> dict:
    """Migrate the empty database at `url` and create NAMED_USERS plus `bulk` plain users."""
    spec = {"password": PASSWORD, "named": NAMED_USERS, "bulk": bulk}
    run_env = {**(env or server_env()), "DATABASE_URL": url}
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, "-c", _SEED, json.dumps(spec)],
        cwd=PROJECT_ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seeding {url} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mint_access(
    user_id: int,
    username: str,
    *,
    is_staff: bool = False,
    is_superuser: bool = False,
    key: str = SECRET_KEY,
    lifetime: int = 3600,
    **extra: Any,
) -> str:
    """An access token as accounts.tokens issues it, signed with `key`."""
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now + lifetime,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": user_id,
        "username": username,
        "is_staff": is_staff,
        "is_superuser": is_superuser,
        **extra,
    }
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class UvicornServer(UvicornProcess):
    """`python -m asgi_app.serve` on a free port; output kept in a temporary log."""

    def __init__(self, env: dict[str, str], *, port: int | None = None, workers: int = 1) -> None:
        # The production server (asgi_app.serve) with its limits from the environment.
        env = {"GRACEFUL_SHUTDOWN_TIMEOUT": "20", **env}
        super().__init__(
            "asgi_app.asgi:application", env, port=port, options=["--workers", str(workers)]
        )
        self.workers = workers
