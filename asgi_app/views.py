"""The base API view and the operational endpoints."""

import asyncio
import functools
import logging
from functools import partial
from typing import Any

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from redis.exceptions import RedisError
from rest_framework.response import Response
from rest_framework.views import APIView as DRFAPIView

from asgi_app.renderers import ORJSONRenderer, dumps
from mongo.client import get_db
from mongo.client import ping as mongo_ping
from mongo.indexes import enrollment_index_ready

logger = logging.getLogger(__name__)

# What the throttles' counter store raises when it cannot count (Redis down, refused,
# timed out). Only these let a request through uncounted; anything else (a malformed
# body, a bug) is an answer or an error like anywhere else.
THROTTLE_STORE_ERRORS = (RedisError, OSError)


def validated(serializer_class, request) -> dict:
    """The request body validated by `serializer_class`; a 400 with field errors if not."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class JsonAnswer(HttpResponse):
    """A view's JSON answer, rendered at once with the API's renderer (orjson).

    The same bytes and headers DRF's `Response` ends up with, for the hot views (enroll,
    the course list): building a `Response`, rendering it and copying it into the plain
    HttpResponse Django gets (`_rendered`) cost about 6% of a first-time enroll's CPU
    (bench/README.md, the reference comparison). It has no `render()`: Django would run
    that in a worker thread, and there is nothing left to render.
    """

    def __init__(self, data: Any, status: int = 200) -> None:
        super().__init__(dumps(data), status=status, content_type=ORJSONRenderer.media_type)


def _rendered(response: HttpResponse) -> HttpResponse:
    """Render a DRF response here, on the event loop (orjson, no I/O).

    Django renders any response that has a `render` method in a worker thread; handing it
    a plain, already rendered HttpResponse saves that round trip on every API request.
    """
    if not isinstance(response, Response):
        return response  # a JsonAnswer, or a plain Django response
    response.render()
    rendered = HttpResponse(response.content, status=response.status_code)
    for header, value in response.items():
        rendered[header] = value
    if not rendered.content:
        # No body (205 after logout, 204): no Content-Type describing one.
        del rendered["Content-Type"]
    rendered.cookies = response.cookies
    return rendered


_ACCEPTS_JSON = frozenset({"*/*", "application/json"})


@functools.cache
def _shared_instances(classes: tuple[type, ...]) -> tuple[Any, ...]:
    return tuple(cls() for cls in classes)


class ApiView(AsyncAPIView):
    """adrf's async view without the worker-thread hop for authentication.

    adrf runs `initial()` (authentication, permissions, throttles) in a worker thread.
    Authentication and permissions are in-memory (JWT signature check, token claims), so
    they run on the event loop, saving a thread round trip per request. Checks that need
    the database are coroutines `confirm(request, view)` on the permission classes, awaited
    after the in-memory checks pass. Throttles come last, and go to a worker thread only
    when their counters live in Redis.
    """

    async def async_dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            for permission in self.get_permissions():
                confirm = getattr(permission, "confirm", None)
                if confirm is not None and not await confirm(request, self):
                    self.permission_denied(request, message=getattr(permission, "message", None))
            await self.throttle(request)
            handler = getattr(self, request.method.lower(), None)
            if request.method.lower() not in self.http_method_names or handler is None:
                handler = self.http_method_not_allowed
                response = handler(request, *args, **kwargs)
            else:
                response = await handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        if not isinstance(self.response, Response):
            return self.response  # already an HttpResponse (a streamed CSV)
        return _rendered(self.response)

    def get_authenticators(self):
        # Authenticators keep no per-request state; DRF builds new ones for every request,
        # and simplejwt's look up the user model each time (3% of an enroll's CPU).
        return _shared_instances(tuple(self.authentication_classes))

    def perform_content_negotiation(self, request, force=False):
        # The API renders JSON only. When the client accepts JSON or anything (no
        # `?format=` override), the answer is settled without parsing the Accept header;
        # anything else goes through DRF's negotiation (a 406 for `Accept: text/html`).
        renderers = self.renderer_classes
        if (
            len(renderers) == 1
            and request.META.get("HTTP_ACCEPT", "*/*") in _ACCEPTS_JSON
            and "format=" not in request.META.get("QUERY_STRING", "")
        ):
            return renderers[0](), renderers[0].media_type
        return super().perform_content_negotiation(request, force)

    async def options(self, request, *args, **kwargs):
        # DRF's OPTIONS handler is synchronous and async_dispatch awaits every handler:
        # without this, OPTIONS was a 500 on every API endpoint.
        return DRFAPIView.options(self, request, *args, **kwargs)

    def get_authenticate_header(self, request) -> str:
        # Also on views without authenticators (login, refresh): a 401 stays a 401 and
        # names the scheme, instead of DRF's fallback to 403.
        return super().get_authenticate_header(request) or 'Bearer realm="api"'

    def check_permissions(self, request):
        DRFAPIView.check_permissions(self, request)

    def check_throttles(self, request):
        """Not during `initial()`: `async_dispatch` awaits `throttle()` instead."""

    async def throttle(self, request) -> None:
        if not self.throttle_classes:  # none on the hot paths
            return
        check = partial(DRFAPIView.check_throttles, self, request)
        try:
            if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
                check()
            else:
                await sync_to_async(check)()  # Redis round trips stay off the event loop
        except THROTTLE_STORE_ERRORS as exc:
            # A rate limiter that cannot count lets requests through rather than failing
            # logins and registrations: availability over strictness, loudly logged.
            logger.warning("throttle counters unavailable, not throttling: %s", exc)


async def root(request: HttpRequest) -> HttpResponseRedirect:
    """`/` is where a newcomer lands first: send them to the interactive docs."""
    return HttpResponseRedirect(reverse("docs"))


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _sql_check() -> None:
    """The users table answers and takes writes, as login and assign need: a no-op UPDATE
    (it matches no row) in a write transaction. It fails when the table is missing (the
    SQLite file was deleted: SQLite silently creates an empty one), the file cannot be
    opened, or the database only reads (a read-only SQLite file, a PostgreSQL standby or a
    read-only default transaction); `SELECT 1` passed in all of those."""
    with transaction.atomic():
        get_user_model().objects.filter(pk__lt=0).update(is_active=False)


async def _mongo_check() -> str:
    await mongo_ping()
    return "ok" if await enrollment_index_ready(get_db()) else "index_missing"


async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the requests' dependencies can serve them: SQL reads and writes the users
    table, MongoDB answers and has the unique (course, user) enrollment index."""
    sql, mongo = await asyncio.gather(
        sync_to_async(_sql_check)(), _mongo_check(), return_exceptions=True
    )
    if isinstance(sql, BaseException):
        logger.warning("not ready: sql: %s: %s", type(sql).__name__, sql)
    checks = {
        "sql": "unavailable" if isinstance(sql, BaseException) else "ok",
        "mongodb": "unavailable" if isinstance(mongo, BaseException) else mongo,
    }
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        logger.warning("not ready: %s", ", ".join(f"{n} {checks[n]}" for n in failed))
        return JsonResponse(
            {
                "status": "unavailable",
                "failed": failed,
                "checks": checks,
                "detail": f"Unavailable: {', '.join(failed)}.",
            },
            status=503,
        )
    return JsonResponse({"status": "ready", "checks": checks})


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
