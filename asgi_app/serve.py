"""How the API is served: `python -m asgi_app.serve [module:app] [--host --port --workers]`.

The one definition of the production HTTP server, used by the Docker image, compose and
the development launcher. It runs uvicorn (uvloop, httptools) with the limits a server
exposed to the internet needs, all read from the environment:

    HOST, PORT                    bind address (127.0.0.1, 8000)
    WEB_CONCURRENCY               worker processes (1)
    HTTP_MAX_HEAD_BYTES           request line + headers, larger is a 431 (16384)
    HTTP_HEADER_TIMEOUT           seconds to receive a request's head, then 408 (10)
    HTTP_KEEPALIVE_TIMEOUT        seconds an idle keep-alive connection stays open (5)
    HTTP_LIMIT_CONCURRENCY        connections + requests per worker, then 503 (1000)
    HTTP_BACKLOG                  listen backlog (2048)
    GRACEFUL_SHUTDOWN_TIMEOUT     seconds in-flight requests get after SIGTERM (20)
    TRUSTED_PROXIES               proxy addresses whose X-Forwarded-For/-Proto are
                                  believed (none: the headers are ignored)
    SERVER_LOG_LEVEL              uvicorn's log level (info)

The body read timeout (HTTP_BODY_TIMEOUT) is enforced in the application, with the body
size limit (asgi_app.limits), so that it answers the API's JSON error.

uvicorn's httptools parser has no limit on the size of a request's head, and piecing a
header together from many reads costs time quadratic in its size (a 100 MB header took
21 s of CPU), nor any timeout for receiving one. GuardedHttpToolsProtocol adds both.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from functools import cache

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from asgi_app.env import env_int, env_list, env_str

logger = logging.getLogger("uvicorn.error")

DEFAULT_APP = "asgi_app.asgi:application"
# What the request line and each header line add beyond the bytes the parser hands over.
_HEADER_LINE_OVERHEAD = 4  # ": " and CRLF
_REQUEST_LINE_OVERHEAD = 20  # method, spaces, "HTTP/1.1", CRLF


@dataclass(frozen=True)
class ServerLimits:
    max_head_bytes: int
    header_timeout: int
    keepalive_timeout: int
    limit_concurrency: int
    backlog: int
    graceful_shutdown_timeout: int
    trusted_proxies: tuple[str, ...]


@cache
def server_limits() -> ServerLimits:
    """Read once per process (workers inherit the environment)."""
    return ServerLimits(
        max_head_bytes=env_int("HTTP_MAX_HEAD_BYTES", 16 * 1024),
        header_timeout=env_int("HTTP_HEADER_TIMEOUT", 10),
        keepalive_timeout=env_int("HTTP_KEEPALIVE_TIMEOUT", 5),
        limit_concurrency=env_int("HTTP_LIMIT_CONCURRENCY", 1000),
        backlog=env_int("HTTP_BACKLOG", 2048),
        graceful_shutdown_timeout=env_int("GRACEFUL_SHUTDOWN_TIMEOUT", 20),
        trusted_proxies=tuple(env_list("TRUSTED_PROXIES", [])),
    )


class _HeadTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline for the request head.

    The head of a request (request line and headers) must arrive within
    `header_timeout` seconds of the connection (first request) or of the read that
    brought its first bytes (later ones), and be at most `max_head_bytes` long. Bytes are
    counted as they arrive, before the parser pieces a header together, so the parser
    never holds more than the limit plus one read; the exact size is checked again when
    the head is complete. Over the limit: 431 and the connection closes; too slow: 408
    and the connection closes.

    Idle keep-alive connections are uvicorn's `timeout_keep_alive`; the body's deadline
    is the application's (asgi_app.limits).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limits = server_limits()
        self._max_head = limits.max_head_bytes
        self._head_timeout = limits.header_timeout
        self._in_head = True  # reading a head (or waiting for the next one)
        self._head_started = False  # its first byte arrived
        self._head_bytes = 0
        self._head_timer = None

    # Connection events

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        # A read that starts inside a head counts whole: an upper bound, never an
        # undercount (a read that starts in a body and ends in the next head is at most
        # one read, and the exact check in on_headers_complete still applies).
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_head(431)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._in_head and self._head_started:
            if self._head_bytes > self._max_head:
                self._refuse_head(431)
            elif self._head_timer is None:
                # A head split over reads; one that arrives whole (the usual case on a
                # keep-alive connection) never needs a timer.
                self._arm_head_timer()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True

    def on_headers_complete(self) -> None:
        size = len(self.url) + _REQUEST_LINE_OVERHEAD
        for name, value in self.headers:
            size += len(name) + len(value) + _HEADER_LINE_OVERHEAD
        if size > self._max_head:
            raise _HeadTooLarge
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_started = False
        self._head_bytes = 0

    # The guards

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self._head_started:
            self._refuse_head(408)
        else:  # connected and never sent a byte
            self.transport.close()

    def _refuse_head(self, status: int) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if status == 431:
            detail = f"Request header fields too large (limit {self._max_head} bytes)."
            code = "header_too_large"
        else:
            detail = f"Request head not received within {self._head_timeout} s."
            code = "header_timeout"
        client = "{}:{}".format(*self.client) if self.client else "-"
        self.logger.warning("%s refused with %d: %s", client, status, detail)
        body = orjson.dumps({"detail": detail, "code": code})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def uvicorn_options() -> dict:
    """Keyword arguments for uvicorn.run / uvicorn.Config: the production server."""
    limits = server_limits()
    return {
        "host": env_str("HOST", "127.0.0.1"),
        "port": env_int("PORT", 8000),
        "workers": env_int("WEB_CONCURRENCY", 1),
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,
        "ws": "none",
        "lifespan": "auto",
        "access_log": False,  # asgi_app.access logs requests, with their request id
        "log_level": env_str("SERVER_LOG_LEVEL", "info"),
        "timeout_keep_alive": limits.keepalive_timeout,
        "limit_concurrency": limits.limit_concurrency,
        "backlog": limits.backlog,
        "timeout_graceful_shutdown": limits.graceful_shutdown_timeout,
        # X-Forwarded-For/-Proto set the client address and scheme only when the peer is a
        # configured proxy; Django then sees the scheme in the ASGI scope.
        "proxy_headers": bool(limits.trusted_proxies),
        "forwarded_allow_ips": list(limits.trusted_proxies) or None,
        "server_header": False,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m asgi_app.serve",
        description="Serve the API with production limits (read from the environment; "
        "see asgi_app/serve.py). The options override HOST, PORT, WEB_CONCURRENCY and "
        "SERVER_LOG_LEVEL.",
    )
    parser.add_argument("app", nargs="?", default=DEFAULT_APP, help=f"default {DEFAULT_APP}")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--log-level")
    args = parser.parse_args(argv)
    options = uvicorn_options()
    overrides = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_level": args.log_level,
    }
    options.update({name: value for name, value in overrides.items() if value is not None})
    uvicorn.run(args.app, **options)


if __name__ == "__main__":
    main()
