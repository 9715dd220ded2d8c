"""Request body limits (asgi_app.limits) and hostile JSON: 413s and fast 400s, never 5xx."""

import time

import httpx
import pytest

from accounts.models import User
from asgi_app.asgi import application
from tests.conftest import timed
from tests.reliability.conftest import processes
from tests.reliability.servers import bearer, mint_access

MIB = 1024 * 1024
REGISTER = "/api/auth/register/"


def _assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:200]
    assert response.headers["Content-Type"] == "application/json"
    assert "too large" in response.json()["detail"]
    assert response.headers["X-Request-ID"]


async def test_body_over_one_mib_is_413_and_never_reaches_django(api):
    body = b'{"username": "' + b"a" * MIB + b'"}'
    response = await api.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    _assert_413(response)
    assert await User.objects.acount() == 0


async def test_body_at_the_limit_is_parsed(api, settings):
    body = b"[" + b" " * (settings.MAX_BODY_BYTES - 2) + b"]"
    response = await api.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400  # a list, not an object: validation, not size


async def test_the_limit_follows_settings(api, settings):
    settings.MAX_BODY_BYTES = 100
    response = await api.post(REGISTER, json={"username": "x" * 200})
    _assert_413(response)


async def test_assign_multiple_accepts_a_larger_body(api, admin, create_course, settings):
    course = await create_course()
    url = f"/api/courses/{course['id']}/assign-multiple/"
    ids = list(range(10_000_000, 10_010_000))  # 10,000 ids that do not exist
    padded = b'{"user_ids": [' + b", ".join(str(i).encode() for i in ids) + b"]}"
    padded += b" " * (2 * MIB - len(padded))  # 2 MiB: over MAX_BODY_BYTES, within 4 MiB
    headers = {**admin[1], "Content-Type": "application/json"}
    response = await api.post(url, content=padded, headers=headers)
    assert response.status_code == 200, response.text[:200]
    assert response.json()["summary"]["not_found"] == 10_000
    too_big = padded + b" " * (settings.MAX_ASSIGN_BODY_BYTES - len(padded) + 1)
    _assert_413(await api.post(url, content=too_big, headers=headers))
    # The larger limit is for assign-multiple only.
    _assert_413(
        await api.post(f"/api/courses/{course['id']}/assign/", content=padded, headers=headers)
    )


async def _call(app, *, path: str, chunks: list[bytes], headers=()) -> tuple[int, bytes, int]:
    """Drive the ASGI app directly with a streamed body; returns status, body, chunks read."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    read = 0
    messages = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {
                "type": "http.request",
                "body": chunks[read - 1],
                "more_body": read < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body, read


async def test_chunked_body_is_counted_and_cut_off_at_the_first_chunk_over(api):
    chunk = b" " * (256 * 1024)
    status, body, read = await _call(
        application,
        path=REGISTER,
        chunks=[chunk] * 40,
        headers=[(b"transfer-encoding", b"chunked")],
    )
    assert status == 413
    assert b"too large" in body
    assert read == 5  # 5 x 256 KiB is the first total over 1 MiB; the rest is never read


async def test_declared_length_over_the_limit_is_refused_before_reading(api):
    status, _, read = await _call(
        application,
        path=REGISTER,
        chunks=[b"{}"],
        headers=[(b"content-length", str(MIB + 1).encode())],
    )
    assert status == 413
    assert read == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * (MIB - 1), id="1 MiB of nested arrays"),
        pytest.param(b'{"a":' * (MIB // 5), id="deeply nested objects"),
        pytest.param(b"[" * 1025 + b"]" * 1025, id="nesting 1025 deep"),
    ],
)
@timed
async def test_deeply_nested_json_is_a_fast_400(api, body, timed):
    started = time.perf_counter()
    response = await api.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "detail" in response.json()
    assert not timed or time.perf_counter() - started < 1.0


@timed
async def test_wide_json_is_a_bounded_400(api, admin, create_course, invariants, timed):
    """Many keys or items just under the limit: rejected quickly, nothing written."""
    course = await create_course()
    users_before = await User.objects.acount()
    many_keys = b"{" + b",".join(b'"k%d":1' % n for n in range(80_000)) + b"}"
    many_items = b'{"user_ids": [' + b"1," * 400_000 + b"1]}"
    started = time.perf_counter()
    first = await api.post(
        REGISTER, content=many_keys, headers={"Content-Type": "application/json"}
    )
    second = await api.post(
        f"/api/courses/{course['id']}/assign-multiple/",
        content=many_items,
        headers={**admin[1], "Content-Type": "application/json"},
    )
    assert not timed or time.perf_counter() - started < 2.0
    assert first.status_code == 400
    # Regression: every stray key used to be echoed back (a 2.4 MB answer, ~1 s of CPU).
    assert len(first.content) < 10_000
    assert len(first.json()) == 20
    assert second.status_code == 400
    assert "At most" in second.json()["user_ids"][0]
    assert await User.objects.acount() == users_before
    assert await invariants(course["id"]) == 0


@processes
def test_limits_on_a_real_socket(prod_server):
    """Over a real connection: Content-Length and chunked transfer both end in a 413."""
    token = bearer(mint_access(prod_server.ids["regular"], "regular"))
    big = b"x" * (MIB + 10)

    def chunks():
        for _ in range(8):
            yield b" " * (256 * 1024)

    with httpx.Client(base_url=prod_server.url, timeout=10) as client:
        declared = client.post(REGISTER, content=big, headers={"Content-Type": "application/json"})
        _assert_413(declared)
        streamed = client.post(
            "/api/courses/", content=chunks(), headers={**token, "Content-Type": "application/json"}
        )
        _assert_413(streamed)
        assert client.get("/healthz").status_code == 200
