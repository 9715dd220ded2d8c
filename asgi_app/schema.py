"""OpenAPI helpers: the shared error body, list parameters and paginated envelopes."""

from functools import cache

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
    413: "Request body too large.",
    429: "Too many requests; see `Retry-After`.",
    503: "MongoDB or the SQL database is unavailable.",
}


def ERRORS(*codes: int) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(
            response=serializers.DictField() if code == 400 else ErrorSerializer,
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
