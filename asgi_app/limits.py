"""Request body size and time limits, enforced in ASGI before Django reads (and spools) a body.

Django's ASGI handler reads the whole body before routing, so a limit inside Django comes
too late to protect memory and disk. This middleware answers `413 {"detail": ...}` when the
declared `Content-Length` is over the limit, without reading the body at all, and counts
the bytes of streamed (chunked) bodies as they arrive, stopping at the first chunk past it.

The limit is `MAX_BODY_BYTES` (1 MiB by default), and `MAX_ASSIGN_BODY_BYTES` (4 MiB) for
bulk assignment, whose list of up to ASSIGN_MAX_USERS ids is legitimately larger, and
`MAX_JOB_BODY_BYTES` (48 MiB) for creating an assignment job (a CSV of up to JOB_MAX_USERS
lines, which Django spools to disk and the view parses line by line), and for the console's
CSV upload that creates one.

A body must also arrive whole within `HTTP_BODY_TIMEOUT` seconds (15 by default) of the
request's head: a client that trickles it gets `408` and the connection closes, instead of
holding a connection and a request slot for as long as it likes. The head's own size and
deadline are the server's (asgi_app.serve).
"""

import asyncio
import logging
import re
from typing import Any

import orjson
from django.conf import settings

from asgi_app.logging import request_id_var
from asgi_app.middleware import request_id_for

logger = logging.getLogger(__name__)

_ASSIGN_MULTIPLE = re.compile(r"^/api/courses/[0-9a-fA-F]{24}/assign-multiple/$")
# The API's job endpoint, and the console's CSV upload that creates a job the same way.
_ASSIGNMENT_JOBS = re.compile(
    r"^/(api/courses/[0-9a-fA-F]{24}/assignment-jobs"
    r"|console/manage/courses/[0-9a-fA-F]{24}/jobs/new)/$"
)


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


def body_limit_for(path: str) -> int:
    if _ASSIGN_MULTIPLE.match(path):
        return settings.MAX_ASSIGN_BODY_BYTES
    if _ASSIGNMENT_JOBS.match(path):
        return settings.MAX_JOB_BODY_BYTES
    return settings.MAX_BODY_BYTES


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class BodySizeLimitMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit_for(scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._reject(scope, send, 413, _too_large(limit))
            return
        if (
            declared in (None, b"0")
            and scope.get("http_version") in ("1.1", "1.0")
            and _header(scope, b"transfer-encoding") is None
        ):
            # HTTP/1: no length and not chunked means no body (RFC 9112 6.3), nothing to
            # wait for: uvicorn answers the first receive at once.
            await self.app(scope, receive, send)
            return

        received = 0
        body_complete = False
        response_started = False
        timeout = settings.HTTP_BODY_TIMEOUT
        deadline = asyncio.get_running_loop().time() + timeout

        async def limited_receive():
            nonlocal received, body_complete
            if body_complete:  # Django listening for a disconnect while the view runs
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
                body_complete = not message.get("more_body", False)
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (_BodyTooLarge, _BodyTooSlow) as exc:
            # Django reads the whole body before it starts a response, so none has started.
            if response_started:
                raise
            if isinstance(exc, _BodyTooLarge):
                await self._reject(scope, send, 413, _too_large(limit))
            else:
                await self._reject(scope, send, 408, _too_slow(timeout, received))

    async def _reject(self, scope, send, status: int, problem: tuple[str, str, str]) -> None:
        log_line, detail, code = problem
        request_id = request_id_for((_header(scope, b"x-request-id") or b"").decode("latin-1"))
        token = request_id_var.set(request_id)
        try:
            logger.warning("%s: %s %s", log_line, scope.get("method"), scope.get("path"))
        finally:
            request_id_var.reset(token)
        body = orjson.dumps({"detail": detail, "code": code})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    # The unread rest of the body makes the connection unusable.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> tuple[str, str, str]:
    return (
        f"request body over {limit} bytes refused",
        f"Request body too large (limit {limit} bytes).",
        "too_large",
    )


def _too_slow(timeout: int, received: int) -> tuple[str, str, str]:
    return (
        f"request body not received within {timeout} s ({received} bytes came)",
        f"Request body not received within {timeout} s.",
        "body_timeout",
    )
