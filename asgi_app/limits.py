"""Request body size limit, enforced in ASGI before Django reads (and spools) a body.

Django's ASGI handler reads the whole body before routing, so a limit inside Django comes
too late to protect memory and disk. This middleware answers `413 {"detail": ...}` when the
declared `Content-Length` is over the limit, without reading the body at all, and counts
the bytes of streamed (chunked) bodies as they arrive, stopping at the first chunk past it.

The limit is `MAX_BODY_BYTES` (1 MiB by default), and `MAX_ASSIGN_BODY_BYTES` (4 MiB) for
bulk assignment, whose list of up to ASSIGN_MAX_USERS ids is legitimately larger.
"""

import logging
import re
from typing import Any

import orjson
from django.conf import settings

from asgi_app.logging import request_id_var
from asgi_app.middleware import request_id_for

logger = logging.getLogger(__name__)

_ASSIGN_MULTIPLE = re.compile(r"^/api/courses/[0-9a-fA-F]{24}/assign-multiple/$")


class _BodyTooLarge(Exception):
    pass


def body_limit_for(path: str) -> int:
    if _ASSIGN_MULTIPLE.match(path):
        return settings.MAX_ASSIGN_BODY_BYTES
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
            await self._reject(scope, send, limit)
            return

        received = 0
        response_started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            # Django reads the whole body before it starts a response, so none has started.
            if response_started:
                raise
            await self._reject(scope, send, limit)

    async def _reject(self, scope, send, limit: int) -> None:
        request_id = request_id_for((_header(scope, b"x-request-id") or b"").decode("latin-1"))
        token = request_id_var.set(request_id)
        try:
            logger.warning(
                "request body over %d bytes refused: %s %s",
                limit,
                scope.get("method"),
                scope.get("path"),
            )
        finally:
            request_id_var.reset(token)
        body = orjson.dumps(
            {"detail": f"Request body too large (limit {limit} bytes).", "code": "too_large"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
