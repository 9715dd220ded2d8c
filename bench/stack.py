"""The stack under test: MongoDB (stand-in or `MONGODB_URI`), a temporary SQLite users
database, migrated and seeded, and the uvicorn servers (raw ASGI, API, API on Motor)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.procs import ROOT, BaselineServer, ReferenceServer, Server
from devstack.stack import run_manage, start_mongo


@dataclass
class Seeded:
    admin_token: str
    users: list[dict[str, Any]]  # {"id", "username", "access", "session"?}: users with tokens
    all_ids: list[int]  # every regular user's id
    extra_ids: list[int] = field(default_factory=list)  # the big course's members


@dataclass
class Stack:
    users: int
    token_users: int
    extra_users: int = 0
    fresh_users: int = 0
    fresh_per_user: int = 0
    sessions: int = 0  # users with a console session (bench/sessions.py)
    keep_temp: bool = False
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    mongo_uri: str = ""
    mongo_kind: str = ""
    mongo_pid: int | None = None
    db_name: str = ""
    servers: dict[str, Server] = field(default_factory=dict)
    seeded: Seeded | None = None
    _exit: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in self.servers.values():
            server.stop()
        self._exit.close()
        if not self.keep_temp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------------------- setup

    def _start(self) -> None:
        self.db_name = f"bench_{int(time.time())}"
        self._start_mongo()
        env = self.api_env()
        run_manage("migrate", "--noinput", "-v", "0", env=env)
        seed_file = self.tmp / "seed.json"
        seed = [sys.executable, "-m", "bench.seed", "--users", str(self.users)]
        seed += ["--extra-users", str(self.extra_users)]
        seed += ["--tokens", str(self.token_users), "--out", str(seed_file)]
        seed += ["--fresh", str(self.fresh_users), "--fresh-per-user", str(self.fresh_per_user)]
        seed += ["--sessions", str(self.sessions)]
        _run(seed, env)
        data = json.loads(seed_file.read_text())
        self.seeded = Seeded(
            data["admin"]["access"], data["users"], data["all_ids"], data["extra_ids"]
        )
        self.servers = {
            "raw": Server("raw", "bench.raw_asgi:app", env, self.tmp / "raw.log"),
            "api": Server("api", "asgi_app.asgi:application", env, self.tmp / "api.log"),
            "api_stock": Server("api_stock", "bench.stock_asgi:app", env, self.tmp / "stock.log"),
            "api_motor": Server(
                "api_motor",
                "asgi_app.asgi:application",
                {**env, "MONGO_DRIVER": "motor"},
                self.tmp / "api_motor.log",
            ),
            # The comparison with bench/reference (bench/compare.py): one worker on the
            # server core, and two workers on every core.
            "reference": self._reference(env),
            "api_2w": Server("api_2w", API_APP, env, self.tmp / "api_2w.log", workers=2),
            "reference_2w": ReferenceServer(
                "reference_2w", REFERENCE_APP, env, self.tmp / "reference_2w.log", workers=2
            ),
        }
        for server in self.servers.values():
            server.start()

    def _reference(self, env: dict[str, str]) -> Server:
        """bench/reference, or with BENCH_BASELINE=<git revision> the API at that revision
        (checked out in a temporary worktree) to measure one change against."""
        revision = os.environ.get("BENCH_BASELINE")
        if not revision:
            return ReferenceServer("reference", REFERENCE_APP, env, self.tmp / "reference.log")
        source = self.tmp / "baseline"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(source), revision], check=True)
        self._exit.callback(subprocess.run, [*git, "remove", "--force", str(source)])
        return BaselineServer("reference", source, env, self.tmp / "baseline.log")

    def _start_mongo(self) -> None:
        self.mongo_uri, standin = start_mongo(self._exit, os.environ.get("MONGODB_URI"))
        if standin is None:
            self.mongo_kind = "MongoDB at MONGODB_URI"
            self._exit.callback(self._drop_databases)
            return
        self.mongo_kind, self.mongo_pid = "stand-in", standin.pid
        # The stand-in shares the generator's core: the server's core stays its own.
        if standin.pid is not None:
            procs.pin_pid(standin.pid, procs.client_cpu())

    def _drop_databases(self) -> None:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(self.mongo_uri)
        try:
            for name in (self.db_name, self.ceiling_db):
                client.drop_database(name)
        finally:
            client.close()

    @property
    def ceiling_db(self) -> str:
        return f"{self.db_name}_ceiling"

    def api_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "asgi_app.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
            "THROTTLE_DISABLED": "1",
            "BENCH_ENDPOINTS": "1",
            "DATABASE_URL": f"sqlite:///{self.tmp / 'users.sqlite3'}",
            "MONGODB_URI": self.mongo_uri,
            "MONGODB_DB": self.db_name,
            "MONGO_DRIVER": "pymongo",
            "JWT_ACCESS_MINUTES": "600",
            "PYTHONPATH": str(ROOT),
        }


API_APP = "asgi_app.asgi:application"
REFERENCE_APP = "bench.reference.app:app"


def _run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, cwd=ROOT, env=env, check=True)
