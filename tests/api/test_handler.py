"""The pooled-thread ASGI handler: no thread round trip unless a request does sync work,
and Django's per-request database housekeeping still happens in the request's thread."""

import threading

import pytest
from django.core import signals
from django.db import connection

from asgi_app.asgi import django_application


@pytest.fixture
def started():
    seen: list[str] = []

    def receiver(**kwargs):
        seen.append(threading.current_thread().name)

    signals.request_started.connect(receiver)
    yield seen
    signals.request_started.disconnect(receiver)


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
    assert all(name.startswith("request") for name in started)
    # Sequential requests reuse one pooled thread instead of starting new ones.
    assert len(set(started)) == 1
    # request_finished ran where the connection lives: the thread's connection is closed.
    thread = next(t for t in django_application._idle if t.used)
    assert thread.submit(lambda: connection.connection is None).result() is True
