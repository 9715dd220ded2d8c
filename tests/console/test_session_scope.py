"""Sessions, session authentication and messages run for /admin/ and /console/ only: an
API request (the enroll hot path) never reaches them, nor their worker-thread hops."""

import pytest

from asgi_app import middleware
from tests.console.conftest import sign_in


@pytest.fixture
def session_calls(monkeypatch):
    """Counts the session-site middleware's hook calls, by middleware."""
    calls = []
    for cls in (
        middleware.SessionMiddleware,
        middleware.AuthenticationMiddleware,
        middleware.MessageMiddleware,
    ):
        original = cls.process_request

        def counted(self, request, _original=original, _name=cls.__name__):
            calls.append((_name, request.path))
            return _original(self, request)

        monkeypatch.setattr(cls, "process_request", counted)
    return calls


async def test_api_requests_never_touch_the_session_machinery(
    api, session_calls, regular, create_course, make_user
):
    course = await create_course()
    await sign_in(api, (await make_user()).username)  # a session cookie the API must ignore
    session_calls.clear()
    enroll = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    listing = await api.get("/api/courses/", headers=regular[1])
    assert (enroll.status_code, listing.status_code) == (201, 200)
    assert session_calls == []
    for response in (enroll, listing):
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")


async def test_console_and_admin_requests_do_use_sessions(api, session_calls):
    await api.get("/console/login/")
    await api.get("/admin/login/")
    names = {name for name, _ in session_calls}
    assert names == {"SessionMiddleware", "AuthenticationMiddleware", "MessageMiddleware"}
    assert {path for _, path in session_calls} == {"/console/login/", "/admin/login/"}
