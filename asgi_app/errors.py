"""The one DRF exception handler that renders every error.

Services raise small `common.errors.DomainError` subclasses carrying an HTTP status and a
code; the handler renders them as `{"detail": ..., "code": ...}`. Infrastructure failures
(MongoDB or SQL unreachable) become 503 here, so no request ends in a traceback.
"""

import logging
from typing import Any

from django.db import DatabaseError, IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import DomainError, ServiceUnavailable

logger = logging.getLogger(__name__)


def _challenge(context: dict[str, Any]) -> str:
    """The view's `WWW-Authenticate` value: every 401 names the Bearer scheme."""
    view, request = context.get("view"), context.get("request")
    header = view.get_authenticate_header(request) if view is not None else None
    return header or 'Bearer realm="api"'


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        headers = None
        if isinstance(exc, ServiceUnavailable):
            headers = {"Retry-After": "5"}
        elif exc.status_code == status.HTTP_401_UNAUTHORIZED:
            headers = {"WWW-Authenticate": _challenge(context)}
        return Response(exc.as_body(), status=exc.status_code, headers=headers)
    if isinstance(exc, DatabaseError) and not isinstance(exc, IntegrityError):
        logger.warning("sql database error: %s: %s", type(exc).__name__, exc)
        return Response(
            {
                "detail": "The user database is unavailable, try again shortly.",
                "code": "service_unavailable",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    return drf_exception_handler(exc, context)
