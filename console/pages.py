"""What every console view shares: who may see it, rendering, paging and domain errors.

Console views are async (the services and selectors are); a page is rendered on the
request's thread (`sync_to_async`), where the template's context processors may read the
session and the messages, which are synchronous.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from math import ceil
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import reverse

from common.errors import NotFound, ServiceUnavailable

ConsoleView = Callable[..., Awaitable[HttpResponse]]


def is_admin(user) -> bool:
    """The API's notion of an admin (accounts.permissions.IsAdmin): staff or superuser."""
    return bool(user.is_active and (user.is_staff or user.is_superuser))


async def render_page(
    request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200
) -> HttpResponse:
    return await sync_to_async(render)(request, template, context or {}, status=status)


def _guarded(methods: tuple[str, ...], *, admin: bool) -> Callable[[ConsoleView], ConsoleView]:
    def decorate(view: ConsoleView) -> ConsoleView:
        @wraps(view)
        async def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            user = await request.auser()
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("console-login"))
            request.user = user  # the templates' `user`, without loading it a second time
            if admin and not is_admin(user):
                return await render_page(request, "console/forbidden.html", status=403)
            try:
                return await view(request, *args, **kwargs)
            except NotFound as exc:
                return await _error(request, 404, "Not found", exc.detail)
            except ServiceUnavailable as exc:
                response = await _error(request, 503, "Temporarily unavailable", exc.detail)
                response["Retry-After"] = "5"
                return response

        guarded.http_methods = list(methods)  # the permission matrix reads them
        guarded.console_admin = admin
        return guarded

    return decorate


def member_page(*methods: str) -> Callable[[ConsoleView], ConsoleView]:
    """A page for any signed-in, active user; anonymous visitors go to the sign-in page."""
    return _guarded(methods or ("GET",), admin=False)


def admin_page(*methods: str) -> Callable[[ConsoleView], ConsoleView]:
    """A page for admins; other signed-in users get a 403 page."""
    return _guarded(methods or ("GET",), admin=True)


async def _error(request: HttpRequest, status: int, title: str, detail: str) -> HttpResponse:
    context = {"title": title, "detail": detail, "status": status}
    return await render_page(request, "console/error.html", context, status=status)


def query_text(request: HttpRequest, name: str, *, max_length: int = 200) -> str:
    """A free-text query parameter, trimmed and bounded (NULs dropped)."""
    return request.GET.get(name, "").replace("\x00", "").strip()[:max_length]


@dataclass(frozen=True)
class Pager:
    """Page-number pagination over a selector's (count, page) with limit/offset."""

    number: int
    per_page: int
    count: int = 0
    base_query: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest, *, per_page: int) -> "Pager":
        raw = request.GET.get("page", "1")
        number = int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1
        others = [(k, v) for k, v in request.GET.items() if k != "page" and v]
        return cls(number=max(number, 1), per_page=per_page, base_query=urlencode(others))

    @property
    def limit(self) -> int:
        return self.per_page

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    def counted(self, count: int) -> "Pager":
        return Pager(self.number, self.per_page, count, self.base_query)

    @property
    def pages(self) -> int:
        return max(ceil(self.count / self.per_page), 1)

    @property
    def first_item(self) -> int:
        return min(self.offset + 1, self.count)

    @property
    def last_item(self) -> int:
        return min(self.offset + self.per_page, self.count)

    def url(self, number: int) -> str:
        query = f"{self.base_query}&" if self.base_query else ""
        return f"?{query}page={number}"

    @property
    def previous_url(self) -> str | None:
        return self.url(self.number - 1) if self.number > 1 else None

    @property
    def next_url(self) -> str | None:
        return self.url(self.number + 1) if self.number < self.pages else None
