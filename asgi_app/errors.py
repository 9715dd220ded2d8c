"""Domain errors and the one DRF exception handler that renders every error.

Services raise small `DomainError` subclasses carrying an HTTP status and a code;
the handler renders them as `{"detail": ..., "code": ...}`. Infrastructure failures
(MongoDB or SQL unreachable) become 503 here, so no request ends in a traceback.
"""

import logging
from typing import Any

from django.db import DatabaseError, IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"
    default_detail = "Invalid request."

    def __init__(self, detail: str | None = None, *, field: str | None = None) -> None:
        self.detail = detail or self.default_detail
        self.field = field
        super().__init__(self.detail)

    def as_body(self) -> dict[str, Any]:
        if self.field:
            # Field errors keep DRF's shape so clients handle them like serializer errors.
            return {self.field: [self.detail]}
        return {"detail": self.detail, "code": self.code}


class InvalidInput(DomainError):
    pass


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    default_detail = "Not found."


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    default_detail = "A backing service is unavailable, try again shortly."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        headers = {"Retry-After": "5"} if isinstance(exc, ServiceUnavailable) else None
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
