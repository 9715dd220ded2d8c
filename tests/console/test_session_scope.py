"""Sessions, session authentication and messages run for /admin/ and /console/ only: an
API request (the enroll hot path) never reaches them, nor their worker-thread hops."""

import pytest
from django.db.backends import utils

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


@pytest.fixture
def statements(monkeypatch):
    """Every SQL statement run, whichever thread runs it (the ORM's async calls run in a
    worker thread, out of reach of a per-connection CaptureQueriesContext)."""
    seen: list[str] = []
    original = utils.CursorWrapper._execute_with_wrappers

    def recorded(self, sql, params, many, executor):
        seen.append(sql)
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(utils.CursorWrapper, "_execute_with_wrappers", recorded)
    return seen


def session_reads(statements: list[str]) -> list[str]:
    return [sql for sql in statements if "django_session" in sql]


async def test_a_signed_in_browser_calling_the_api_costs_no_session_query(
    api, statements, regular, create_course
):
    """The console's session cookie rides along on API calls from the same browser: the
    API neither reads the session table nor answers with a cookie or `Vary: Cookie`."""
    course = await create_course(capacity=5)
    await sign_in(api, regular[0].username)
    assert "sessionid" in api.cookies
    console = await api.get("/console/my-training/")
    assert console.status_code == 200  # the cookie is a live session
    assert session_reads(statements)  # and reading it is a query this check sees
    statements.clear()
    responses = [
        await api.get("/api/courses/", headers=regular[1]),
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1]),
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1]),
        await api.get(f"/api/courses/{course['id']}/", headers=regular[1]),
    ]
    assert [r.status_code for r in responses] == [200, 201, 200, 200]
    assert session_reads(statements) == []
    for response in responses:
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")


async def test_a_session_cookie_alone_does_not_authenticate_the_api(
    api, statements, regular, create_course
):
    course = await create_course()
    await sign_in(api, regular[0].username)
    assert (await api.get("/console/my-training/")).status_code == 200
    statements.clear()
    listing = await api.get("/api/courses/")
    enroll = await api.post(f"/api/courses/{course['id']}/enroll/")
    assert (listing.status_code, enroll.status_code) == (401, 401)
    assert session_reads(statements) == []
    assert "Set-Cookie" not in enroll.headers


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
