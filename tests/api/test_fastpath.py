"""The fast path (asgi_app/fastpath.py) answers exactly as Django does.

The same battery of requests goes to the stack with the fast path and to the stack
without it (Django answers everything); status, body and every header must match. Enroll
requests change state, so each side gets its own, identically prepared courses and the
fields that name them (ids, times) are compared by shape; list requests are read-only and
compared byte for byte. Each case also states who must answer it on the fast side, so a
fast path that quietly handed everything to Django would fail here too.
"""

import re
import time

import httpx
import jwt
import orjson
import pytest
from django.conf import settings

from asgi_app.asgi import application, django_application
from asgi_app.fastpath import FastPathApp
from asgi_app.limits import BodySizeLimitMiddleware

FAST, DJANGO = "fast", "django"
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
# Fields of an enrollment that name this side's course, enrollment and moment.
_PER_SIDE = ("id", "course_id", "enrolled_at", "withdrawn_at")


class CountingDjango:
    """Django's handler, counting the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await django_application(scope, receive, send)


@pytest.fixture
async def sides(transactional_db, mongo_db):
    """Two clients: one through the fast path, one straight to Django (both behind the
    body limits, as served)."""
    behind_fast = CountingDjango()
    fast_app = FastPathApp(behind_fast)
    assert fast_app.enabled, "the fast path is on in the default configuration"
    apps = {
        FAST: BodySizeLimitMiddleware(fast_app),
        DJANGO: BodySizeLimitMiddleware(CountingDjango()),
    }
    clients = {}
    for name, app in apps.items():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        clients[name] = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    yield clients, behind_fast
    for client in clients.values():
        await client.aclose()


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in response.headers.multi_items())


def _masked(response: httpx.Response) -> tuple[int, object, list[tuple[str, str]]]:
    """Status, body and headers with this side's own values replaced by their shape."""
    headers = []
    for name, value in _headers(response):
        if name == "x-request-id" and _HEX_ID.match(value):
            value = "<generated>"
        elif name == "content-length":
            assert int(value) == len(response.content)
            value = "<length>"
        headers.append((name, value))
    body: object = response.content
    if response.headers.get("content-type") == "application/json":
        body = response.json()
        if isinstance(body, dict) and "enrolled_at" in body:
            body = {k: (f"<{type(v).__name__}>" if k in _PER_SIDE else v) for k, v in body.items()}
    return response.status_code, body, headers


async def _send(client, behind_fast, method, url, headers=None, **kwargs):
    before = behind_fast.calls
    response = await client.request(method, url, headers=headers or {}, **kwargs)
    return response, (DJANGO if behind_fast.calls > before else FAST)


def _expired_token(valid: str) -> str:
    claims = jwt.decode(valid, options={"verify_signature": False})
    now = int(time.time())
    claims.update(exp=now - 10, iat=now - 1000)
    return jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")


async def _prepared_courses(api, admin_headers, other_headers) -> dict[str, str]:
    """One side's courses: open, archived, and full (capacity 1, taken by another user)."""
    ids = {}
    for name, extra in {
        "open": {},
        "archived": {"status": "archived"},
        "full": {"capacity": 1},
    }.items():
        body = {
            "course_title": f"Parity {name}",
            "course_description": "Same on both paths.",
            "display_price": {"amount": "10.00", "currency": "USD"},
            **extra,
        }
        response = await api.post("/api/courses/", json=body, headers=admin_headers)
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    taken = await api.post(f"/api/courses/{ids['full']}/enroll/", headers=other_headers)
    assert taken.status_code == 201
    return ids


async def test_enroll_answers_match_django(sides, api, admin, regular, make_user, auth_for):
    clients, behind_fast = sides
    auth = regular[1]
    other = await auth_for(await make_user())
    token = auth["Authorization"].removeprefix("Bearer ")
    courses = {side: await _prepared_courses(api, admin[1], other) for side in clients}
    unknown = "0123456789abcdef01234567"
    request_id = {"X-Request-ID": "parity-1"}

    # (who answers on the fast side, method, path template, headers, extra arguments)
    battery = [
        (FAST, "POST", "/api/courses/{open}/enroll/", {**auth, **request_id}, {}),
        (FAST, "POST", "/api/courses/{open}/enroll/", auth, {}),  # the repeat
        (FAST, "POST", "/api/courses/{OPEN}/enroll/", auth, {}),  # upper-case id
        (FAST, "POST", "/api/courses/{full}/enroll/", auth, {}),  # waitlisted
        (FAST, "POST", "/api/courses/{full}/enroll/", auth, {}),
        (FAST, "POST", "/api/courses/{archived}/enroll/", auth, {}),  # 409
        (FAST, "POST", f"/api/courses/{unknown}/enroll/", auth, {}),  # 404
        (FAST, "POST", "/api/courses/{open}/enroll/", {**auth, "X-Request-ID": "bad id!"}, {}),
        (FAST, "POST", "/api/courses/{open}/enroll/", {**auth, "Accept": "application/json"}, {}),
        (DJANGO, "POST", "/api/courses/{open}/enroll/", {}, {}),  # no token
        (DJANGO, "POST", "/api/courses/{open}/enroll/", {"Authorization": "Bearer x.y.z"}, {}),
        (
            DJANGO,
            "POST",
            "/api/courses/{open}/enroll/",
            {"Authorization": f"Bearer {_expired_token(token)}", **request_id},
            {},
        ),
        (DJANGO, "POST", "/api/courses/{open}/enroll/", {"Authorization": f"Basic {token}"}, {}),
        (DJANGO, "POST", "/api/courses/{open}/enroll", auth, {}),  # no trailing slash
        (DJANGO, "POST", "/api/courses/not-an-object-id/enroll/", auth, {}),
        (DJANGO, "POST", "/api/courses/{open}/enroll/", {**auth, "Accept": "text/html"}, {}),
        (DJANGO, "POST", "/api/courses/{open}/enroll/?format=json", auth, {}),
        (DJANGO, "POST", "/api/courses/{open}/enroll/", auth, {"json": {"user_id": 1}}),
        (DJANGO, "POST", "/api/courses/{open}/enroll/", {**auth, "Idempotency-Key": "k<side>"}, {}),
        (DJANGO, "POST", "/api/courses/{open}/enroll/", {**auth, "Host": "evil.example"}, {}),
        (DJANGO, "GET", "/api/courses/{open}/enroll/", auth, {}),  # 405
        (DJANGO, "OPTIONS", "/api/courses/{open}/enroll/", auth, {}),
        (DJANGO, "DELETE", "/api/courses/{open}/enroll/", auth, {}),  # withdrawn
        (FAST, "POST", "/api/courses/{open}/enroll/", auth, {}),  # back: 200
    ]
    for expected_by, method, template, headers, extra in battery:
        answers = {}
        for side, client in clients.items():
            ids = courses[side]
            url = template.format(**ids, OPEN=ids["open"].upper())
            # A key names one operation: each side's course needs its own.
            own = {name: value.replace("<side>", side) for name, value in headers.items()}
            answers[side], by = await _send(client, behind_fast, method, url, own, **extra)
            if side == FAST:
                assert by == expected_by, (method, template, headers)
        fast, slow = (_masked(answers[side]) for side in (FAST, DJANGO))
        assert fast == slow, f"{method} {template} {headers} {fast} {slow}"


async def test_enroll_statuses_cover_the_contract(sides, api, admin, regular, make_user, auth_for):
    """The battery above exercises the answers it claims to: 201, 200, waitlisted, 409, 404."""
    clients, behind_fast = sides
    other = await auth_for(await make_user())
    ids = await _prepared_courses(api, admin[1], other)
    auth = regular[1]
    fast = clients[FAST]
    first = await fast.post(f"/api/courses/{ids['open']}/enroll/", headers=auth)
    assert first.status_code == 201
    assert (await fast.post(f"/api/courses/{ids['open']}/enroll/", headers=auth)).status_code == 200
    waiting = await fast.post(f"/api/courses/{ids['full']}/enroll/", headers=auth)
    assert (waiting.status_code, waiting.json()["status"]) == (201, "waitlisted")
    archived = await fast.post(f"/api/courses/{ids['archived']}/enroll/", headers=auth)
    assert (archived.status_code, archived.json()["code"]) == (409, "course_archived")
    assert behind_fast.calls == 0


async def test_list_answers_match_django_byte_for_byte(sides, api, admin, regular):
    clients, behind_fast = sides
    for i in range(5):
        body = {
            "course_title": f"Listed {i}",
            "course_description": "A course.",
            "display_price": {"amount": "1.00", "currency": "EUR"},
        }
        assert (await api.post("/api/courses/", json=body, headers=admin[1])).status_code == 201
    auth = regular[1]
    battery = [
        (FAST, "GET", "/api/courses/", auth),
        (FAST, "GET", "/api/courses/", {**auth, "X-Request-ID": "list-1"}),
        (FAST, "GET", "/api/courses/?limit=2", auth),
        (FAST, "GET", "/api/courses/?limit=2&offset=2", auth),
        (FAST, "GET", "/api/courses/?offset=4&limit=2", auth),
        (FAST, "GET", "/api/courses/?limit=abc&offset=-1", auth),
        (FAST, "GET", "/api/courses/?limit=1000", auth),
        (FAST, "GET", "/api/courses/", {**auth, "Host": "localhost:8000"}),
        (FAST, "GET", "/api/courses/", {**auth, "Accept": "*/*"}),
        (DJANGO, "GET", "/api/courses/?search=listed", auth),
        (DJANGO, "GET", "/api/courses/?ordering=course_title&limit=2", auth),
        (DJANGO, "GET", "/api/courses/?status=archived", auth),  # 403 for a regular user
        (DJANGO, "GET", "/api/courses/?status=bogus", auth),  # 400
        (DJANGO, "GET", "/api/courses/?format=json", auth),
        (DJANGO, "GET", "/api/courses", auth),
        (DJANGO, "GET", "/api/courses/", {}),
        (DJANGO, "GET", "/api/courses/", {"Authorization": "Bearer x.y.z"}),
        (DJANGO, "GET", "/api/courses/", {**auth, "Accept": "text/html"}),
        (DJANGO, "GET", "/api/courses/", {**auth, "Host": "evil.example"}),
        (DJANGO, "HEAD", "/api/courses/", auth),
        (DJANGO, "OPTIONS", "/api/courses/", auth),
    ]
    for expected_by, method, url, headers in battery:
        fast, by = await _send(clients[FAST], behind_fast, method, url, headers)
        assert by == expected_by, (method, url, headers)
        slow, _ = await _send(clients[DJANGO], behind_fast, method, url, headers)
        assert fast.status_code == slow.status_code, (url, fast.text, slow.text)
        assert fast.content == slow.content, url
        masked = [
            (n, "<generated>" if n == "x-request-id" and _HEX_ID.match(v) else v)
            for n, v in _headers(fast)
        ]
        masked_slow = [
            (n, "<generated>" if n == "x-request-id" and _HEX_ID.match(v) else v)
            for n, v in _headers(slow)
        ]
        assert masked == masked_slow, url


async def test_the_served_application_takes_the_fast_path(api, regular):
    """`asgi_app.asgi:application` (what uvicorn serves) has the fast path in it, on."""
    app = application
    while not isinstance(app, FastPathApp):
        app = app.app
    assert app.enabled


async def test_fast_paths_off_hands_everything_to_django(
    settings, transactional_db, mongo_db, regular
):
    settings.FAST_PATHS = False
    behind = CountingDjango()
    app = FastPathApp(behind)
    assert not app.enabled
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/api/courses/", headers=regular[1])
    assert response.status_code == 200
    assert behind.calls == 1


async def test_another_middleware_list_turns_it_off(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "corsheaders.middleware.CorsMiddleware"]
    assert not FastPathApp(CountingDjango()).enabled


async def test_an_unexpected_error_is_the_production_500(sides, regular, monkeypatch):
    clients, behind_fast = sides
    from courses import services

    async def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "enrollment_create", broken)
    response = await clients[FAST].post(
        "/api/courses/0123456789abcdef01234567/enroll/", headers=regular[1]
    )
    assert response.status_code == 500
    assert orjson.loads(response.content) == {
        "detail": "Internal server error.",
        "code": "server_error",
    }
    assert response.headers["x-content-type-options"] == "nosniff"
    assert behind_fast.calls == 0
