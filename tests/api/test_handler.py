"""The pooled-thread ASGI handler: no thread round trip unless a request does sync work,
at most SQL_POOL_SIZE request threads (then a 503), and Django's per-request database
housekeeping still happens in the request's thread."""

import asyncio
import hashlib
import inspect
import threading

import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import connection

from asgi_app.asgi import django_application
from asgi_app.handler import DJANGO_HANDLE_SHA256, RequestThread, RequestThreads


@pytest.fixture
def started():
    seen: list[str] = []

    def receiver(**kwargs):
        seen.append(threading.current_thread().name)

    signals.request_started.connect(receiver)
    yield seen
    signals.request_started.disconnect(receiver)


@pytest.fixture
def small_pool(monkeypatch):
    """Swap the handler's request threads for a pool of one."""

    def make(timeout: float) -> RequestThreads:
        threads = RequestThreads(1, timeout)
        monkeypatch.setattr(django_application, "threads", threads)
        return threads

    return make


def test_handler_fork_matches_the_reviewed_django_source():
    source = inspect.getsource(ASGIHandler.__call__) + inspect.getsource(ASGIHandler.handle)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == DJANGO_HANDLE_SHA256, (
        "Django's ASGIHandler.__call__/handle changed: re-review asgi_app/handler.py "
        "(PooledThreadASGIHandler.handle_on is a fork of handle, and its docstring states "
        "the request-signal contract), then record the new DJANGO_HANDLE_SHA256."
    )


async def test_requests_that_stay_on_the_event_loop_use_no_thread(
    api, regular, create_course, started
):
    course = await create_course()
    started.clear()
    assert (await api.get("/healthz")).status_code == 200
    enroll = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    assert enroll.status_code == 201
    # Nothing ran on a request thread: its first task would have been request_started.
    assert started == []


async def test_sql_requests_run_django_housekeeping_in_their_thread(api, regular, started):
    for _ in range(3):
        assert (await api.get("/api/auth/me/", headers=regular[1])).status_code == 200
    assert len(started) == 3
    assert all(name.startswith("request-") for name in started)
    # Sequential requests reuse one pooled thread instead of starting new ones.
    assert len(set(started)) == 1
    # request_finished ran where the connection lives: the thread's connection is closed.
    probe = RequestThread(django_application.threads)  # the idle thread last used
    try:
        name = probe.submit(lambda: threading.current_thread().name).result()
        assert name == started[0]
        assert probe.submit(lambda: connection.connection is None).result() is True
    finally:
        django_application.threads.release(probe)


async def test_concurrent_requests_get_threads_with_unique_names(api, regular):
    # Given a request_started receiver that holds three requests on their threads at once
    barrier = threading.Barrier(3, timeout=30)
    names: list[str] = []

    def receiver(**kwargs):
        names.append(threading.current_thread().name)
        barrier.wait()

    signals.request_started.connect(receiver)
    try:
        # When three requests doing SQL run concurrently
        responses = await asyncio.gather(
            *(api.get("/api/auth/me/", headers=regular[1]) for _ in range(3))
        )
    finally:
        signals.request_started.disconnect(receiver)
    # Then each ran on its own thread, and the threads' names tell them apart
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(names) == 3
    assert len(set(names)) == 3, names


async def test_no_free_request_thread_answers_503_then_serves_again(api, regular, small_pool):
    # Given the one request thread held by another request
    threads = small_pool(timeout=0.2)
    holder = RequestThread(threads)
    holder.submit(lambda: None).result()
    # When a request needs SQL
    busy = await api.get("/api/auth/me/", headers=regular[1])
    # Then it waited, gave up with a 503 and never got a thread of its own
    assert busy.status_code == 503, busy.text
    assert busy.json() == {
        "detail": "The service is busy, try again shortly.",
        "code": "service_unavailable",
    }
    assert busy.headers["Retry-After"] == "5"
    assert (threads.busy, threads.waiting) == (1, 0)
    # And once the thread is free, requests are served on it
    threads.release(holder)
    assert (await api.get("/api/auth/me/", headers=regular[1])).status_code == 200
    assert (threads.busy, threads.waiting) == (0, 0)


async def test_a_request_waiting_for_a_thread_gets_the_next_free_one(api, regular, small_pool):
    # Given the one request thread held, and a generous wait
    threads = small_pool(timeout=60)
    holder = RequestThread(threads)
    holder.submit(lambda: None).result()
    # When a request needs SQL, it waits in line
    waiting = asyncio.create_task(api.get("/api/auth/me/", headers=regular[1]))
    for _ in range(3000):
        if threads.waiting:
            break
        await asyncio.sleep(0.01)
    assert threads.waiting == 1
    assert not waiting.done()
    # Then releasing the thread serves it
    threads.release(holder)
    assert (await waiting).status_code == 200
    assert (threads.busy, threads.waiting) == (0, 0)
