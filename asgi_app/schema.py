"""OpenAPI helpers: the shared error body, list parameters and paginated envelopes."""

import inspect
from functools import cache

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)


_DESCRIPTIONS = {
    400: "Malformed body or failed validation (DRF field errors, or `detail`).",
    401: "Missing, expired or invalid token.",
    403: "Authenticated but not allowed (admin only).",
    404: "Unknown course id.",
    409: "The course document cannot take another member (MongoDB's 16 MiB document limit,"
    " see docs/scaling.md); nothing was written.",
    413: "Request body too large (MAX_BODY_BYTES; MAX_ASSIGN_BODY_BYTES for assign-multiple).",
    415: "The body is not `application/json`.",
    429: "Too many requests; see `Retry-After`.",
    503: "MongoDB or the SQL database is unavailable.",
}


def ERRORS(*codes: int) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(
            response=OpenApiTypes.OBJECT if code == 400 else ErrorSerializer,
            description=_DESCRIPTIONS[code],
        )
        for code in codes
    }


LIST_PARAMS = [
    OpenApiParameter("limit", int, description="Page size (default 20, at most 100)."),
    OpenApiParameter("offset", int, description="Items to skip."),
]


@cache
def paginated(item_serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    name = item_serializer.__name__.removesuffix("Serializer")
    return type(
        f"Paginated{name}ListSerializer",
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item_serializer(many=True),
        },
    )


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


_HEALTH = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
_READY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        "failed": {"type": "array", "items": {"type": "string", "enum": ["sql", "mongodb"]}},
        "detail": {"type": "string"},
    },
    "required": ["status", "checks"],
}


def add_operations_endpoints(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: document /healthz and /readyz (plain Django views), and drop
    the base view's docstring that every operation would otherwise inherit as description."""
    from asgi_app.serializers import StrictSerializer
    from asgi_app.views import ApiView

    inherited = inspect.cleandoc(ApiView.__doc__ or "")
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("description", "").strip() == inherited:
                del operation["description"]
    # Request bodies of StrictSerializer reject undeclared fields: say so in the schema.
    strict = inspect.cleandoc(StrictSerializer.__doc__ or "")
    for component in result.get("components", {}).get("schemas", {}).values():
        if component.get("description", "").strip() == strict:
            del component["description"]
            component["additionalProperties"] = False
    paths = result.setdefault("paths", {})
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: 200 while the process serves requests.",
            "tags": ["operations"],
            "security": [],
            "responses": {"200": {"description": "Alive.", **_json(_HEALTH)}},
        }
    }
    paths["/readyz"] = {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: 200 when SQL and MongoDB answer, else 503 naming them.",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": {"description": "Ready.", **_json(_READY)},
                "503": {"description": "A dependency is unavailable.", **_json(_READY)},
            },
        }
    }
    return result
