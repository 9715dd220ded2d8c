"""Real processes for the reliability tests and the fuzz driver.

A uvicorn server of `asgi_app.asgi:application` in a subprocess, a migrated SQLite file
with known users, and access tokens minted with the server's signing key (the same claims
`accounts.tokens` writes), so a test can authenticate without touching the server's SQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    spec = {"password": PASSWORD, "named": NAMED_USERS, "bulk": bulk}
    run_env = {**(env or server_env()), "DATABASE_URL": f"sqlite:///{path}"}
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
        raise RuntimeError(f"seeding {path} failed:\n{done.stderr}")
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


class UvicornServer:
    """`python -m asgi_app.serve` (uvicorn, production limits) on a free port; output kept
    in a log file."""

    def __init__(self, env: dict[str, str], *, port: int | None = None, workers: int = 1) -> None:
        self.env = env
        self.port = port or free_port()
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_path: str = "/healthz", timeout: float = 30.0) -> UvicornServer:
        log_fd, self.log_path = tempfile.mkstemp(prefix="uvicorn-", suffix=".log")
        # The production server definition (asgi_app.serve), its limits from the env.
        command = [sys.executable, "-m", "asgi_app.serve"]
        env = {
            "GRACEFUL_SHUTDOWN_TIMEOUT": "20",
            **self.env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(self.workers),
        }
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter and app
            command, cwd=PROJECT_ROOT, env=env, stdout=log_fd, stderr=subprocess.STDOUT
        )
        os.close(log_fd)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"uvicorn did not become ready:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        return Path(self.log_path).read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM: uvicorn's graceful shutdown (in-flight requests finish, lifespan runs)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> UvicornServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)
