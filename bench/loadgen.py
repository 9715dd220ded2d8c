"""A small HTTP/1.1 keep-alive load generator on asyncio protocols.

Requests are pre-encoded bytes; responses are parsed only as far as the status line and
the body length (Content-Length or chunked). That keeps the client's CPU per request a
fraction of the server's, so one generator core can drive one server core.

Two modes:
- closed loop: `concurrency` connections, each sends its next request when the previous
  answer arrives, for `duration` seconds or until the request supply runs out;
- open loop: requests are *scheduled* at a fixed rate and latency is measured from the
  scheduled start, so a stalled server cannot hide its queueing (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import cast

RequestSource = Callable[[int], bytes]

_HEADER_END = b"\r\n\r\n"


def encode_request(
    method: str,
    path: str,
    *,
    host: str,
    token: str | None = None,
    body: bytes | None = None,
    cookie: str | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    elif method in {"POST", "PUT", "PATCH"}:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        parsed = _parse_response(self.buffer)
        if parsed is not None:
            status, body, consumed = parsed
            del self.buffer[:consumed]
            self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by server"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _parse_response(buffer: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes consumed) of the first complete response, or None."""
    end = buffer.find(_HEADER_END)
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    start = end + 4
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        value_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : value_end if value_end >= 0 else None])
        if len(buffer) < start + length:
            return None
        return status, bytes(buffer[start : start + length]), start + length
    if b"\r\ntransfer-encoding: chunked" in head:
        return _parse_chunked(buffer, status, start)
    return status, b"", start  # no body (204/304) or close-delimited: not used here


def _parse_chunked(buffer: bytearray, status: int, position: int) -> tuple[int, bytes, int] | None:
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        if size == 0:
            return status, bytes(body), chunk_start + 2
        body += buffer[chunk_start : chunk_start + size]
        position = chunk_start + size + 2


async def connect(host: str, port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Connection, host, port)
    return protocol


@dataclass
class WindowResult:
    """What one measured window produced, from the client's side."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful or not
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0

    @property
    def errors(self) -> int:
        non_2xx = sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        return non_2xx + self.transport_errors


class Pool:
    """`size` open keep-alive connections to one server."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.connections: list[_Connection] = []

    async def __aenter__(self) -> Pool:
        self.connections = list(
            await asyncio.gather(*(connect(self.host, self.port) for _ in range(self.size)))
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for connection in self.connections:
            connection.close()

    async def _send(self, index: int, raw: bytes, result: WindowResult) -> int | None:
        connection = self.connections[index]
        try:
            status, _ = await connection.request(raw)
        except ConnectionError:
            result.transport_errors += 1
            self.connections[index] = await connect(self.host, self.port)
            return None
        result.statuses[status] += 1
        return status

    async def closed_loop(
        self, source: RequestSource, *, duration: float, limit: int | None = None
    ) -> WindowResult:
        """Every connection busy until `duration` elapses or `limit` requests were sent."""
        result = WindowResult()
        counter = itertools.count()
        deadline = time.perf_counter() + duration

        async def worker(index: int) -> None:
            while time.perf_counter() < deadline:
                number = next(counter)
                if limit is not None and number >= limit:
                    return
                raw = source(number)
                started = time.perf_counter()
                await self._send(index, raw, result)
                result.latencies.append(time.perf_counter() - started)

        return await self._timed(result, [worker(i) for i in range(self.size)])

    async def open_loop(
        self, source: RequestSource, *, rate: float, duration: float
    ) -> WindowResult:
        """Request n starts at t0 + n/rate on whichever connection is free."""
        result = WindowResult()
        total = max(1, int(rate * duration))
        counter = itertools.count()
        t0 = time.perf_counter() + 0.05

        async def worker(index: int) -> None:
            while (number := next(counter)) < total:
                scheduled = t0 + number / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._send(index, source(number), result)
                result.latencies.append(time.perf_counter() - scheduled)

        return await self._timed(result, [worker(i) for i in range(self.size)])

    async def _timed(self, result: WindowResult, workers: list[Coroutine]) -> WindowResult:
        cpu_before, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*workers)
        result.wall = time.perf_counter() - started
        result.client_cpu = time.process_time() - cpu_before
        result.sent = len(result.latencies)
        return result

    async def one(self, raw: bytes) -> tuple[int, bytes]:
        """A single request on the first connection (setup and checks)."""
        return await self.connections[0].request(raw)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (a cheaper client), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
