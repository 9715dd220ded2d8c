"""A narrow fast path for the two hottest requests, answered before Django's handler.

`POST /api/courses/<id>/enroll/` and `GET /api/courses/` are most of the traffic under
load. Through Django, each one pays for the handler's two tasks per request (the view and
a disconnect listener, then `asyncio.wait`), the middleware chain, URL resolution and
DRF's `Request`, negotiation, permission and finalize steps: profiled under `make bench`
that was about a third of a request's CPU, more than the MongoDB driver's share (issue 17,
README "Performance"). This app answers exactly those two requests without it, and it
adds no rules of its own:

- the answers come from the same functions the views call (`courses.views.enroll_answer`,
  `courses.views.course_page_answer`), so every business rule, query and body is shared;
- the request is Django's own `ASGIRequest`; authentication is the view's authenticator
  (`TokenClaimsAuthentication`, the same verified-token memory); the middleware's request
  and response hooks that matter for these answers run as they do in the chain
  (`SecurityMiddleware`, `CommonMiddleware`, `XFrameOptionsMiddleware`), and the request
  id and access line are `RequestIdMiddleware`'s (`respond_with_request_id`);
- errors a service raises are rendered by the API's one exception handler, with the
  view's `Allow` header, as DRF would.

Anything it does not reproduce exactly goes to Django unchanged, decided before any work
is done: another method or path (no trailing slash, HEAD, OPTIONS), a request with a body
or an `Idempotency-Key`, an `Accept` other than JSON or anything, `?format=`, query
parameters other than the list's `limit`/`offset` (enroll: any), a `root_path`, a host
Django refuses or a redirect the middleware would answer, and any request whose token
does not authenticate (Django renders the 401). The whole path switches itself off, at
startup, when the configuration it mirrors differs: another middleware list (CORS on,
say), URLs that no longer route these paths to these views, throttles, permissions or
other authenticators on them, `FORCE_SCRIPT_NAME`, or `FAST_PATHS=0`.
tests/api/test_fastpath.py sends the same requests with it on and off and compares
status, body and headers.

What Django does and this path does not: send `request_started`/`request_finished`
(their receivers close SQL connections and caches, which these requests never open), and
cancel the view when the client disconnects (the enrollment completes, as it would had
the client stayed; the answer is dropped). An unexpected exception (a bug, not a domain
error) answers the production 500 body, also in DEBUG, and is logged as Django logs it.
"""

import io
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.urls import resolve
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated

from accounts.authentication import TokenClaimsAuthentication
from asgi_app.errors import exception_handler
from asgi_app.middleware import (
    CommonMiddleware,
    SecurityMiddleware,
    XFrameOptionsMiddleware,
    respond_with_request_id,
)
from asgi_app.renderers import ORJSONRenderer, dumps
from asgi_app.views import server_error
from common.errors import DomainError
from courses.views import CourseListView, EnrollView, course_page_answer, enroll_answer

logger = logging.getLogger(__name__)
django_request_log = logging.getLogger("django.request")

# The chain this path was written against (asgi_app/settings.py): with any other, Django
# answers everything.
EXPECTED_MIDDLEWARE = (
    "asgi_app.middleware.RequestIdMiddleware",
    "asgi_app.middleware.SecurityMiddleware",
    "asgi_app.middleware.SessionMiddleware",  # admin and console only
    "asgi_app.middleware.CommonMiddleware",
    "asgi_app.middleware.CsrfViewMiddleware",  # API views are csrf_exempt
    "asgi_app.middleware.AuthenticationMiddleware",  # admin and console only
    "asgi_app.middleware.MessageMiddleware",  # admin and console only
    "asgi_app.middleware.XFrameOptionsMiddleware",
)

_ENROLL = re.compile(r"/api/courses/([0-9a-fA-F]{24})/enroll/")
_LIST = "/api/courses/"
_LIST_PAGE_PARAMS = frozenset({"limit", "offset"})
_ACCEPTS_JSON = frozenset({"*/*", "application/json"})  # as ApiView's negotiation


async def _never_called(request: Any) -> None:  # the middleware hooks want a next handler
    return None


class FastRequest(ASGIRequest):
    """Django's request, plus the two attributes the shared answer functions read from
    DRF's `Request`: `query_params` and the authenticated `user`."""

    user: Any = None

    @property
    def query_params(self):
        return self.GET


Answer = Callable[..., Awaitable[HttpResponse]]  # (request, *path arguments)


def _enabled() -> str | None:
    """None when the fast path may run, else why not (logged once at startup)."""
    if not settings.FAST_PATHS:
        return "FAST_PATHS=0"
    if tuple(settings.MIDDLEWARE) != EXPECTED_MIDDLEWARE:
        return "the middleware list differs from the one it mirrors"
    if settings.FORCE_SCRIPT_NAME is not None:
        return "FORCE_SCRIPT_NAME is set"
    routes = {_LIST: CourseListView, "/api/courses/" + "0" * 24 + "/enroll/": EnrollView}
    for path, view in routes.items():
        if getattr(resolve(path).func, "view_class", None) is not view:
            return f"{path} is no longer {view.__name__}'s route"
    if EnrollView.permission_classes != [IsAuthenticated]:
        return "EnrollView's permissions changed"
    for view in (EnrollView, CourseListView):
        if (
            view.throttle_classes
            or list(view.authentication_classes) != [TokenClaimsAuthentication]
            or len(view.renderer_classes) != 1
            or view.versioning_class is not None
        ):
            return f"{view.__name__}'s throttles, authenticators or renderers changed"
    return None


def _allow_header(view_class: type) -> str:
    """The `Allow` value DRF's finalize step puts on every answer of this view."""
    view = view_class()
    view.setup(None)  # as `as_view()` does per request: HEAD joins GET
    return view.default_response_headers["Allow"]


class FastPathApp:
    def __init__(self, app: Any) -> None:
        self.app = app
        reason = _enabled()
        self.enabled = reason is None
        if reason is not None:
            logger.info("fast path off: %s", reason)
        self.authenticator = TokenClaimsAuthentication()
        self.security = SecurityMiddleware(_never_called)
        self.common = CommonMiddleware(_never_called)
        self.xframe = XFrameOptionsMiddleware(_never_called)
        self.enroll_allow = _allow_header(EnrollView)
        self.list_allow = _allow_header(CourseListView)

    async def __call__(self, scope, receive, send) -> None:
        route = self._route(scope) if self.enabled and scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        answer, allow, args = route
        request = FastRequest(scope, io.BytesIO())
        if not self._plain(request) or not self._authenticated(request):
            await self.app(scope, receive, send)
            return
        await self._answer(request, answer, allow, args, send)

    def _route(self, scope) -> tuple[Answer, str, tuple] | None:
        """The answer for this method and path, or None (Django's). Paths match exactly as
        Django's URL resolver does (no `APPEND_SLASH`; the id converter lowercases)."""
        if scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == _LIST:
            return course_page_answer, self.list_allow, ()
        if method == "POST":
            match = _ENROLL.fullmatch(path)
            if match is not None and not scope.get("query_string"):
                return enroll_answer, self.enroll_allow, (match.group(1).lower(),)
        return None

    def _plain(self, request: FastRequest) -> bool:
        """No body, no Idempotency-Key, JSON accepted, only parameters the answer reads,
        and the middleware's request hooks let it through (host allowed, no redirect)."""
        meta = request.META
        if (
            meta.get("CONTENT_LENGTH", "0") != "0"
            or "HTTP_TRANSFER_ENCODING" in meta
            or "HTTP_IDEMPOTENCY_KEY" in meta
            or meta.get("HTTP_ACCEPT", "*/*") not in _ACCEPTS_JSON
        ):
            return False
        if meta["QUERY_STRING"] and not request.GET.keys() <= _LIST_PAGE_PARAMS:
            return False  # filters, ?format= or anything else: the view's validation
        try:
            return (
                self.security.process_request(request) is None
                and self.common.process_request(request) is None
            )
        except (SuspiciousOperation, PermissionDenied):
            return False  # Django answers it: 400 for a host it does not serve, 403 ...

    def _authenticated(self, request: FastRequest) -> bool:
        """The view's authentication and `IsAuthenticated`; a refusal is Django's to render."""
        try:
            result = self.authenticator.authenticate(request)
        except APIException:  # a bad or expired token: Django renders the 401
            return False
        if result is None or not result[0].is_authenticated:
            return False
        request.user = result[0]
        return True

    async def _answer(self, request, answer: Answer, allow: str, args: tuple, send) -> None:
        async def respond(request):
            return await self._response(request, answer, allow, args)

        # RequestIdMiddleware's work: the id in every log line, the access line, the header.
        response = await respond_with_request_id(request, respond)
        await _send(response, send)

    async def _response(self, request, answer: Answer, allow: str, args: tuple) -> HttpResponse:
        try:
            response = await answer(request, *args)
            response["Allow"] = allow  # DRF's finalize step
        except DomainError as exc:
            response = _error_response(exc, allow)
        except Exception as exc:
            django_request_log.error(
                "Internal Server Error: %s",
                request.path,
                exc_info=exc,
                extra={"status_code": 500, "request": request},
            )
            response = server_error(request)  # Django's handler500, without the view's Allow
        # The chain's response hooks, innermost first, as Django runs them.
        response = self.xframe.process_response(request, response)
        response = self.common.process_response(request, response)
        return self.security.process_response(request, response)


def _error_response(exc: DomainError, allow: str) -> HttpResponse:
    """What the view answers for a service's error: the exception handler's body, status
    and headers (`Retry-After` on 503), rendered as `ApiView` renders DRF responses."""
    drf_response = exception_handler(exc, {})
    response = HttpResponse(
        dumps(drf_response.data),
        status=drf_response.status_code,
        content_type=ORJSONRenderer.media_type,
    )
    for header, value in drf_response.items():
        if header != "Content-Type":  # Django's HTML default until DRF renders it
            response[header] = value
    response["Allow"] = allow
    return response


async def _send(response: HttpResponse, send) -> None:
    """Django's `ASGIHandler.send_response` for a plain (not streamed) response."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
