"""A burst of SQL requests against a real server: bounded threads and connections.

250 concurrent `GET /api/auth/me/` (one ordinary user's token) used to start a thread and
open a SQL connection per request, and on PostgreSQL (`max_connections` 100) 150 of them
answered 503 while other clients of the database were refused too. Now a worker serves
SQL on at most SQL_POOL_SIZE threads and connections; the rest wait, then answer 503.
"""

import asyncio
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import psycopg
import pytest

from tests.reliability.conftest import ON_POSTGRES, processes
from tests.reliability.servers import (
    UvicornServer,
    bearer,
    mint_access,
    prepare_database,
    server_env,
)

BURST = 250
POOL_SIZE = 5


class PeakWatcher:
    """Samples `measure()` in a background thread; `peak` is the largest value seen."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.measure = measure
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            self._stop.wait(0.005)

    def __enter__(self) -> "PeakWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def burst(url: str, headers: dict[str, str]) -> Counter:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.get("/api/auth/me/", headers=headers) for _ in range(BURST))
        )
    for response in responses:
        if response.status_code == 503:
            assert response.json()["code"] == "service_unavailable", response.text
            assert response.headers["Retry-After"] == "5"
    return Counter(response.status_code for response in responses)


def assert_serves_afterwards(server: UvicornServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/api/auth/me/", headers=headers).status_code == 200
        assert client.get("/readyz").status_code == 200
    assert "Traceback" not in server.log()


@processes
async def test_sqlite_burst_uses_at_most_pool_size_threads(sqlite_copy, standin_uri):
    # Given a production-like server on SQLite with a pool of 5 request threads
    path, ids = sqlite_copy
    env = server_env(
        DATABASE_URL=f"sqlite:///{path}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"pool_{uuid.uuid4().hex[:8]}",
        SQL_POOL_SIZE=str(POOL_SIZE),
    )
    headers = bearer(mint_access(ids["regular"], "regular"))
    with UvicornServer(env) as server:
        pid = server.process.pid
        idle = thread_count(pid)
        # When 250 requests doing SQL arrive at once
        with PeakWatcher(lambda: thread_count(pid)) as threads:
            statuses = await burst(server.url, headers)
        print(f"sqlite burst: {dict(statuses)}, threads {idle} idle, {threads.peak} peak")
        # Then each answered 200 or 503, and no more than 5 threads were added
        assert set(statuses) <= {200, 503}, statuses
        assert threads.peak - idle <= POOL_SIZE
        # And the server keeps serving
        assert_serves_afterwards(server, headers)


@pytest.fixture
def postgres_database():
    """A throwaway database on the PostgreSQL server of DATABASE_URL, dropped afterwards."""
    server_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    name = f"sqlpool_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server_url}/{name}", name
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL: runs in make test-pg")
async def test_postgres_burst_uses_at_most_pool_size_connections(postgres_database, standin_uri):
    # Given a production-like server on a fresh PostgreSQL database, pool size 5
    url, name = postgres_database
    ids = prepare_database(url)
    env = server_env(
        DATABASE_URL=url,
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"pool_{uuid.uuid4().hex[:8]}",
        SQL_POOL_SIZE=str(POOL_SIZE),
    )
    headers = bearer(mint_access(ids["regular"], "regular"))
    server_url = url.rsplit("/", 1)[0]
    with (
        UvicornServer(env) as server,
        psycopg.connect(f"{server_url}/postgres", autocommit=True) as monitor,
    ):
        lock = threading.Lock()

        def connections() -> int:
            with lock:
                row = monitor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
                ).fetchone()
            return row[0]

        # When 250 requests doing SQL arrive at once
        with PeakWatcher(connections) as peak:
            statuses = await burst(server.url, headers)
        print(f"postgres burst: {dict(statuses)}, {peak.peak} connections at peak")
        # Then each answered 200 or 503, on no more than 5 connections to the database
        assert set(statuses) <= {200, 503}, statuses
        assert 0 < peak.peak <= POOL_SIZE
        # And the server keeps serving
        assert_serves_afterwards(server, headers)
        assert connections() <= POOL_SIZE
