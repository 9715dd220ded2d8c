"""The server as `python -m asgi_app.serve` runs it, against hostile clients on real sockets:
oversized heads (431), heads and bodies that trickle (408), idle connections, the
concurrency limit, a bounded graceful shutdown and forwarded headers from a stranger.

The servers here use 2 s timeouts; the assertions allow 30 s (rawhttp.PATIENCE), so a busy
machine cannot fail them, while a server without the limits never closes at all.
"""

import shutil
import sqlite3
import time
import uuid

import httpx
import pytest

from tests.reliability import rawhttp
from tests.reliability.conftest import ON_POSTGRES, processes
from tests.reliability.servers import UvicornServer, server_env

KIB = 1024
SHORT = "2"


def _env(db, standin_uri, **overrides):
    short = {
        "HTTP_HEADER_TIMEOUT": SHORT,
        "HTTP_BODY_TIMEOUT": SHORT,
        "HTTP_KEEPALIVE_TIMEOUT": SHORT,
    }
    return server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"slow_{uuid.uuid4().hex[:8]}",
        **{**short, **overrides},
    )


@pytest.fixture(scope="module")
def guarded(sqlite_template, standin_uri, tmp_path_factory):
    """Production defaults but 2 s timeouts; HSTS on, throttles on, no trusted proxy."""
    if ON_POSTGRES:
        pytest.skip("process-level test: runs once, in the SQLite pass of CI")
    path, _ = sqlite_template
    db = tmp_path_factory.mktemp("slow") / "db.sqlite3"
    shutil.copyfile(path, db)
    env = _env(
        db,
        standin_uri,
        SECURE_HSTS_SECONDS="3600",
        THROTTLE_DISABLED="0",
        THROTTLE_REGISTER_IP_RATE="3/min",
    )
    with UvicornServer(env) as server:
        server.db = db
        yield server


def _users(db) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM accounts_user").fetchone()[0]


def _assert_refused(reply: rawhttp.Reply, status: int, code: str) -> None:
    assert reply.closed, "the server kept the connection open"
    assert reply.status == status, reply.head
    assert reply.headers["connection"] == "close"
    assert f'"code":"{code}"'.encode() in reply.body


@processes
def test_a_huge_header_is_refused_at_16_kib_and_others_are_served(guarded):
    # Given a client sending a 4 MiB header in 64 KiB writes (uvicorn used to take it all)
    sock = rawhttp.connect(guarded.port)
    sent = 0
    with sock:
        for piece in rawhttp.huge_header_request(4 * KIB * KIB):
            if not rawhttp.send_quietly(sock, piece):
                break
            sent += len(piece)
        # Then it is answered 431 and closed long before the end of the header
        reply = rawhttp.read_until_closed(sock)
    assert reply.closed
    # (the server may reset the connection on unread bytes before the 431 is read)
    assert reply.status in (431, None), reply.head
    assert sent < 4 * KIB * KIB
    # And the server goes on serving everybody else
    assert httpx.get(guarded.url + "/healthz", timeout=10).status_code == 200


@processes
@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(rawhttp.get("/healthz?q=" + "a" * 17 * KIB), id="request line"),
        pytest.param(rawhttp.get("/healthz", headers={"X-Big": "b" * 17 * KIB}), id="one header"),
        pytest.param(
            rawhttp.get("/healthz", headers={f"X-H{n}": "c" * 100 for n in range(200)}),
            id="many headers",
        ),
    ],
)
def test_a_head_over_the_limit_in_one_write_is_431(guarded, request_bytes):
    with rawhttp.connect(guarded.port) as sock:
        sock.sendall(request_bytes)
        reply = rawhttp.read_until_closed(sock)
    _assert_refused(reply, 431, "header_too_large")


@processes
def test_a_head_under_the_limit_is_served(guarded):
    with rawhttp.connect(guarded.port) as sock:
        sock.sendall(rawhttp.get("/healthz", headers={"X-Pad": "p" * 12 * KIB}))
        reply = rawhttp.read_response(sock)
    assert reply.status == 200, reply.head


@processes
def test_a_partial_head_is_closed_with_408_after_the_header_timeout(guarded):
    with rawhttp.connect(guarded.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        reply = rawhttp.read_until_closed(sock)
    _assert_refused(reply, 408, "header_timeout")


@processes
def test_a_head_dripped_a_byte_at_a_time_is_cut_off(guarded):
    # Given a slowloris client that keeps sending one more header byte every 0.2 s
    request = rawhttp.get("/healthz", headers={"X-Slow": "s" * 1000})
    with rawhttp.connect(guarded.port) as sock:
        deadline = time.monotonic() + rawhttp.PATIENCE
        for byte in request:
            if time.monotonic() > deadline or not rawhttp.send_quietly(sock, bytes([byte])):
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(65536, 0x02):  # MSG_PEEK: the answer came
                    break
            except TimeoutError:
                continue
        # Then the server answers 408 and closes before the head is complete
        reply = rawhttp.read_until_closed(sock)
    _assert_refused(reply, 408, "header_timeout")


@processes
def test_a_connection_that_sends_nothing_is_closed(guarded):
    with rawhttp.connect(guarded.port) as sock:
        reply = rawhttp.read_until_closed(sock)
    assert reply.closed
    assert reply.status is None


@processes
def test_a_keep_alive_connection_is_closed_when_idle_or_half_way_through_a_head(guarded):
    with rawhttp.connect(guarded.port) as sock:
        sock.sendall(rawhttp.get("/healthz"))
        assert rawhttp.read_response(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        _assert_refused(rawhttp.read_until_closed(sock), 408, "header_timeout")
    with rawhttp.connect(guarded.port) as sock:
        sock.sendall(rawhttp.get("/healthz"))
        assert rawhttp.read_response(sock).status == 200
        idle = rawhttp.read_until_closed(sock)
    assert idle.closed
    assert idle.status is None


@processes
def test_a_trickled_body_is_cut_off_with_408_and_nothing_is_written(guarded):
    # Given a registration whose body declares 100 bytes and trickles them
    users_before = _users(guarded.db)
    head = (
        b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with rawhttp.connect(guarded.port) as sock:
        sock.sendall(head + b'{"username": "trickle", ')
        deadline = time.monotonic() + rawhttp.PATIENCE
        while time.monotonic() < deadline and rawhttp.send_quietly(sock, b" "):
            sock.settimeout(0.5)
            try:
                if sock.recv(65536, 0x02):  # MSG_PEEK
                    break
            except TimeoutError:
                continue
        # Then it is answered 408 in the API's error format and the connection closes
        reply = rawhttp.read_until_closed(sock)
    _assert_refused(reply, 408, "body_timeout")
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"]
    # And nothing was written
    assert _users(guarded.db) == users_before


@processes
def test_forwarded_headers_from_an_untrusted_peer_are_ignored(guarded):
    # Given no TRUSTED_PROXIES: the client is not a proxy, whatever it says
    headers, statuses = rawhttp.spoofed_forwarding(guarded.url)
    # Then Django does not believe the request was made over HTTPS (no HSTS)
    assert "strict-transport-security" not in headers
    # And made-up addresses do not escape the per-IP throttle
    assert statuses == [400, 400, 400, 429, 429]


@processes
def test_idle_connections_beyond_the_concurrency_limit_get_503_until_they_time_out(
    sqlite_copy, standin_uri
):
    db, _ = sqlite_copy
    env = _env(db, standin_uri, HTTP_LIMIT_CONCURRENCY="4")
    with UvicornServer(env) as server:
        # Given four connections that send nothing
        idle = [rawhttp.connect(server.port) for _ in range(4)]
        try:
            # When a fifth client asks, it is refused at once rather than queued
            with rawhttp.connect(server.port) as sock:
                sock.sendall(rawhttp.get("/healthz"))
                assert rawhttp.read_response(sock).status == 503
            # Then the idle ones are closed after the header timeout, and it is served
            for sock in idle:
                assert rawhttp.read_until_closed(sock).closed
            assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        finally:
            for sock in idle:
                sock.close()


@processes
def test_sigterm_with_a_trickling_client_exits_within_the_graceful_timeout(
    sqlite_copy, standin_uri
):
    db, _ = sqlite_copy
    # The body timeout is long, so only the graceful shutdown bound can end the request.
    env = _env(db, standin_uri, HTTP_BODY_TIMEOUT="600", GRACEFUL_SHUTDOWN_TIMEOUT=SHORT)
    server = UvicornServer(env).start()
    try:
        with rawhttp.connect(server.port) as trickler, rawhttp.connect(server.port) as partial:
            trickler.sendall(
                b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            partial.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(0.5)  # both are inside the server
            server.process.send_signal(15)
            assert server.process.wait(timeout=rawhttp.PATIENCE) in (0, -15)
            assert rawhttp.read_until_closed(trickler, timeout=5).closed
            assert rawhttp.read_until_closed(partial, timeout=5).closed
        assert "timeout graceful shutdown exceeded" in server.log()
    finally:
        server.kill()
