"""Middleware that adds no worker-thread round trips to API requests."""

import logging
import re
import time
import uuid

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security
from django.utils.decorators import async_only_middleware

from asgi_app.logging import request_id_var

# A client's id is echoed only when it is short and printable, so it cannot forge log lines.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_for(incoming: str) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    return incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex


# One JSON line per request with its request id (uvicorn's own access line is written after
# the request's context is gone, so it cannot carry one). Off unless ACCESS_LOG_LEVEL=INFO.
access_log = logging.getLogger("asgi_app.access")


async def respond_with_request_id(request, get_response):
    """`get_response(request)` with the request id set for every log line, the access line
    written and the `X-Request-ID` header added: RequestIdMiddleware's work, which the fast
    path (asgi_app/fastpath.py) does through this same function."""
    request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID", ""))
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    try:
        response = await get_response(request)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
    finally:
        request_id_var.reset(token)
    response["X-Request-ID"] = request_id
    return response


@async_only_middleware
def RequestIdMiddleware(get_response):
    async def middleware(request):
        return await respond_with_request_id(request, get_response)

    return middleware


class InlineMixin:
    """Run a Django middleware's hooks on the event loop instead of in a worker thread.

    Django adapts sync middleware for async requests by running `process_request` and
    `process_response` through `sync_to_async`: two thread round trips per middleware per
    request. For middleware that does no I/O (headers, cookies, host checks) that is pure
    overhead, so these subclasses call the hooks directly.
    """

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class AdminOnlyMixin:
    """Run a middleware only for the session-authenticated sites, the Django admin and the
    web console: the API authenticates with JWT and needs no sessions, auth middleware or
    messages (and their thread round trips); for it this is one `startswith`."""

    async def __acall__(self, request):
        if request.path_info.startswith(SESSION_PREFIXES):
            return await super().__acall__(request)
        return await self.get_response(request)


ADMIN_PREFIX = "/admin/"
CONSOLE_PREFIX = "/console/"
SESSION_PREFIXES = (ADMIN_PREFIX, CONSOLE_PREFIX)


class SecurityMiddleware(InlineMixin, security.SecurityMiddleware):
    pass


class CommonMiddleware(InlineMixin, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineMixin, csrf.CsrfViewMiddleware):
    async def process_view(self, request, callback, callback_args, callback_kwargs):
        # Token checks are pure CPU; API views are csrf_exempt and return at once.
        return super().process_view(request, callback, callback_args, callback_kwargs)


class XFrameOptionsMiddleware(InlineMixin, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(AdminOnlyMixin, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(AdminOnlyMixin, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(AdminOnlyMixin, messages.MessageMiddleware):
    pass
