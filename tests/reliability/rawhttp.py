"""HTTP/1.1 over a bare socket, for clients no HTTP library will play: oversized heads,
heads and bodies that trickle, connections that never finish."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import httpx

# Generous: the servers' timeouts in these tests are 2 s, the machine may be busy.
PATIENCE = 30.0


@dataclass
class Reply:
    """What came back before the server closed: a response, or nothing at all."""

    status: int | None
    head: bytes = b""
    body: bytes = b""
    closed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def connect(port: int, timeout: float = PATIENCE) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """False once the server has closed (or reset) the connection."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def read_until_closed(sock: socket.socket, timeout: float = PATIENCE) -> Reply:
    """Everything the server sends until it closes the connection (or `timeout` passes:
    then `closed` is False)."""
    data = b""
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    return parse(data, closed=closed)


def read_response(sock: socket.socket, timeout: float = PATIENCE) -> Reply:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return parse(data, closed=True)
        data += chunk
    reply = parse(data)
    length = int(reply.headers.get("content-length", "0"))
    while len(reply.body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            reply.closed = True
            break
        reply.body += chunk
    return reply


def parse(data: bytes, *, closed: bool = False) -> Reply:
    if not data:
        return Reply(status=None, closed=closed)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return Reply(status=status, head=head, body=body, closed=closed, headers=headers)


def get(path: str, *, host: str = "127.0.0.1", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def huge_header_request(size: int, chunk: int = 64 * 1024) -> list[bytes]:
    """`GET /healthz` with an `X-Big` header of `size` bytes, in `chunk`-sized writes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    pieces = [start]
    pieces += [b"a" * min(chunk, size - done) for done in range(0, size, chunk)]
    pieces.append(b"\r\n\r\n")
    return pieces


def spoofed_forwarding(base_url: str) -> tuple[dict, list[int]]:
    """A client lying in forwarded headers: the headers of `/healthz` asked with
    `X-Forwarded-Proto: https`, and the statuses of five registrations (throttled per IP)
    each claiming another address in `X-Forwarded-For` and `Forwarded`."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        https = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert https.status_code == 200
        statuses = [
            client.post(
                "/api/auth/register/",
                json={},
                headers={"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=10.0.0.{n}"},
            ).status_code
            for n in range(5)
        ]
    return dict(https.headers), statuses
