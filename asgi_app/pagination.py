"""Limit/offset pagination in DRF's shape, for lists that do not come from a queryset."""

from dataclasses import dataclass
from typing import Any

from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def _non_negative_int(raw: str | None, default: int) -> int:
    # DRF convention: an unparsable or negative value falls back to the default.
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value >= 0 else default


def page_params(request: Request) -> PageParams:
    limit = _non_negative_int(request.query_params.get("limit"), DEFAULT_LIMIT) or DEFAULT_LIMIT
    offset = _non_negative_int(request.query_params.get("offset"), 0)
    # Bound the offset so a huge value cannot overflow the database's 64-bit skip.
    return PageParams(limit=min(limit, MAX_LIMIT), offset=min(offset, 2**31))


def page_body(request: Request, page: PageParams, count: int, results: list[Any]) -> dict:
    url = request.build_absolute_uri()
    next_url = None
    if page.offset + page.limit < count:
        next_url = replace_query_param(url, "limit", page.limit)
        next_url = replace_query_param(next_url, "offset", page.offset + page.limit)
    previous_url = None
    if page.offset > 0:
        previous_url = replace_query_param(url, "limit", page.limit)
        previous_offset = max(page.offset - page.limit, 0)
        previous_url = (
            remove_query_param(previous_url, "offset")
            if previous_offset == 0
            else replace_query_param(previous_url, "offset", previous_offset)
        )
    return {"count": count, "next": next_url, "previous": previous_url, "results": results}
