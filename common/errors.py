"""Domain errors: what went wrong, as a code and an HTTP status, without any web framework.

Services, repositories and the MongoDB client raise these; the web layer's one exception
handler (`asgi_app.errors.exception_handler`) renders them as `{"detail": ..., "code": ...}`.
Living here, below every layer, they can be raised from `mongo/` without importing the web
layer.
"""

from typing import Any


class DomainError(Exception):
    status_code = 400
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
    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class ServiceUnavailable(DomainError):
    status_code = 503
    code = "service_unavailable"
    default_detail = "A backing service is unavailable, try again shortly."


class FieldErrors(InvalidInput):
    """Several fields wrong at once, rendered in the shape of a serializer's errors."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items()))

    def as_body(self) -> dict[str, Any]:
        return dict(self.errors)


class AuthenticationFailed(DomainError):
    """A 401; the web layer adds the `WWW-Authenticate` challenge the contract requires."""

    status_code = 401
    code = "authentication_failed"
    default_detail = "Incorrect authentication credentials."


class TokenNotValid(AuthenticationFailed):
    code = "token_not_valid"
    default_detail = "Token is invalid or expired."


class Conflict(DomainError):
    """The request is valid but the resource's current state refuses it."""

    status_code = 409
    code = "conflict"
    default_detail = "The request conflicts with the current state of the resource."
