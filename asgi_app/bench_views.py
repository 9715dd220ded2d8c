"""Benchmark-only endpoints (`make bench`): the framework floor and the auth-only rung.

Routed under `/bench/` only when `BENCH_ENDPOINTS=1`; otherwise `urlpatterns` is empty and
the module adds nothing to the API.
"""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from asgi_app.views import ApiView


async def plain(request: HttpRequest) -> JsonResponse:
    """A plain Django async view: the full middleware stack, no DRF."""
    return JsonResponse({"ok": True})


@extend_schema(exclude=True)
class AuthNoopView(ApiView):
    """JWT verification and the permission check, then nothing."""

    permission_classes = [IsAuthenticated]

    async def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns: list[URLPattern] = (
    [
        path("plain", plain, name="bench-plain"),
        path("auth-noop", AuthNoopView.as_view(), name="bench-auth-noop"),
    ]
    if settings.BENCH_ENDPOINTS
    else []
)
