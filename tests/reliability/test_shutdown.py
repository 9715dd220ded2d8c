"""Graceful shutdown: SIGTERM lets in-flight requests finish; the lifespan closes MongoDB."""

import asyncio
import sqlite3
import time
import uuid

import httpx

from asgi_app.lifespan import LifespanApp
from mongo import client as mongo_client
from tests.reliability.conftest import processes
from tests.reliability.servers import PASSWORD, UvicornServer, server_env


@processes
def test_sigterm_lets_in_flight_requests_finish(sqlite_copy, standin_uri):
    db, _ = sqlite_copy
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"shutdown_{uuid.uuid4().hex[:8]}",
        # Production password hashing, one hashing thread: four registrations queue up
        # for a second or more, long enough to be in flight when SIGTERM arrives.
        PASSWORD_HASHERS="django.contrib.auth.hashers.PBKDF2PasswordHasher",
        PASSWORD_HASH_THREADS="1",
    )
    names = [f"late{n}" for n in range(4)]

    async def register_all(server):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            requests = [
                client.post(
                    "/api/auth/register/",
                    json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
                )
                for name in names
            ]
            tasks = [asyncio.create_task(request) for request in requests]
            await asyncio.sleep(0.4)  # all four are in the server now, hashing one by one
            sent_at = time.monotonic()
            server.process.send_signal(15)
            responses = await asyncio.gather(*tasks)
            return responses, time.monotonic() - sent_at

    server = UvicornServer(env).start()
    try:
        responses, drained_after = asyncio.run(register_all(server))
        assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
        assert drained_after > 0.2, "the requests were still in flight at SIGTERM"
        # uvicorn re-raises the signal it handled once shutdown is complete.
        assert server.process.wait(timeout=30) in (0, -15)
        log = server.log()
        assert "Finished server process" in log
        assert "Waiting for application shutdown." in log
        assert "Application shutdown complete." in log  # after LifespanApp closed MongoDB
        with sqlite3.connect(db) as connection:
            stored = connection.execute(
                "SELECT COUNT(*) FROM accounts_user WHERE username LIKE 'late%'"
            ).fetchone()[0]
        assert stored == 4
    finally:
        server.kill()


async def test_lifespan_shutdown_closes_the_mongo_client(mongo_db):
    mongo_client.get_client()
    assert mongo_client._client is not None
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(incoming)

    async def send(message):
        sent.append(message["type"])

    await LifespanApp(app=None)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert mongo_client._client is None
