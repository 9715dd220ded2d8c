"""Assignment jobs over HTTP (API.md "Admin assignment, version 2"): thin views over
courses.jobs."""

from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.permissions import IsAdmin
from asgi_app.schema import ERRORS, ErrorSerializer
from asgi_app.views import ApiView
from common.errors import DomainError
from courses import jobs
from courses.idempotency import idempotent, idempotent_object_id
from courses.job_serializers import (
    AssignmentJobCreateSerializer,
    AssignmentJobResultsSerializer,
    AssignmentJobSerializer,
    job_data,
    job_json_input,
    result_data,
)
from courses.serializers import query_flag

RESULTS_PAGE_DEFAULT = 1000
RESULTS_PAGE_MAX = 5000


class JsonBodyTooLarge(DomainError):
    status_code = 413
    code = "too_large"


def _job_location(request, job_id: str) -> str:
    return request.build_absolute_uri(reverse("assignment-job-detail", args=[job_id]))


async def _job_input(request) -> dict[str, Any]:
    """job_create's input arguments from the body: JSON parsed whole (bounded by
    JOB_JSON_MAX_BYTES) and validated as assign-multiple's body; CSV read line by line from
    the spooled body (its rows are checked as they are stored). `?dry_run=` and
    `?override_capacity=` apply to either, as for assign-multiple."""
    django_request = request._request
    media_type = (django_request.content_type or "").lower()
    if media_type == "text/csv":
        return {
            "chunks": jobs.csv_chunks(django_request),
            "dry_run": query_flag(request, "dry_run"),
            "override_capacity": query_flag(request, "override_capacity"),
            "with_identifiers": True,
        }
    if media_type != "application/json":
        raise UnsupportedMediaType(media_type or "(none)")
    raw = await sync_to_async(django_request.read, thread_sensitive=False)(
        settings.JOB_JSON_MAX_BYTES + 1
    )
    if len(raw) > settings.JOB_JSON_MAX_BYTES:
        raise JsonBodyTooLarge(
            f"A JSON body is at most {settings.JOB_JSON_MAX_BYTES} bytes; send larger "
            "cohorts as text/csv."
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    valid = job_json_input(body, request)
    return {
        "chunks": jobs.list_chunks(valid.values, valid.kind),
        "due_at": valid.due_at,
        "dry_run": valid.dry_run,
        "override_capacity": valid.override_capacity,
        "with_identifiers": valid.with_identifiers,
    }


_CSV_BODY = {
    "type": "string",
    "description": "assign-multiple's CSV: a header row naming an identifier column "
    "(`user_id`, `username` or `email`) and optionally `due_at` (per row; an empty cell "
    "means none); other columns are ignored. UTF-8, a BOM and CRLF line ends tolerated. "
    "Read as a stream: the first bad line makes the request a 400 naming it.",
    "example": "email,due_at\r\nada@corp.example,2030-01-31T09:00:00Z\r\n",
}


class AssignmentJobCreateView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @idempotent
    @extend_schema(
        request={
            "application/json": AssignmentJobCreateSerializer,
            "text/csv": _CSV_BODY,
        },
        responses={
            202: OpenApiResponse(
                AssignmentJobSerializer,
                description="Queued; `Location` is the job's URL. An Idempotency-Key retry "
                "answers the same job.",
            ),
            **ERRORS(400, 401, 403, 404, 413, 415, 503),
            409: OpenApiResponse(
                ErrorSerializer, description="The course is archived (`course_archived`)."
            ),
        },
        parameters=[
            OpenApiParameter(
                "dry_run", bool, description="A dry-run job (also the JSON body's `dry_run`)."
            ),
            OpenApiParameter(
                "override_capacity",
                bool,
                description="Enroll beyond the capacity (also the JSON body's field).",
            ),
        ],
        summary="Assign a cohort of up to JOB_MAX_USERS users as a background job (admin only). "
        "assign-multiple's bodies: JSON with one of `user_ids`, `usernames`, `emails`, or "
        "text/csv with a `user_id`, `username` or `email` column and optionally `due_at`.",
    )
    async def post(self, request, course_id: str):
        job, _ = await jobs.job_create(
            course_id=course_id,
            admin_id=request.user.id,
            job_id=idempotent_object_id(request),
            **await _job_input(request),
        )
        return Response(
            job_data(job),
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": _job_location(request, job.id)},
        )


class AssignmentJobDetailView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        responses={200: AssignmentJobSerializer, **ERRORS(401, 403, 404, 503)},
        operation_id="assignment_jobs_retrieve",
        summary="Poll an assignment job: status, counts, summary, `eta_seconds` (admin only).",
    )
    async def get(self, request, id: str):
        return Response(job_data(await jobs.job_get(job_id=id)))

    @extend_schema(
        responses={
            200: OpenApiResponse(
                AssignmentJobSerializer,
                description="Cancelled (the chunk running now still finishes and is counted); "
                "a repeat answers the cancelled job.",
            ),
            **ERRORS(401, 403, 404, 503),
            409: OpenApiResponse(
                ErrorSerializer, description="The job has finished (`job_finished`)."
            ),
        },
        operation_id="assignment_jobs_cancel",
        summary="Cancel an assignment job (admin only).",
    )
    async def delete(self, request, id: str):
        return Response(job_data(await jobs.job_cancel(job_id=id)))


class AssignmentJobResultsView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, description="From the previous page's `next`."),
            OpenApiParameter(
                "limit",
                int,
                description=f"Page size (default {RESULTS_PAGE_DEFAULT}, "
                f"at most {RESULTS_PAGE_MAX}).",
            ),
        ],
        responses={200: AssignmentJobResultsSerializer, **ERRORS(400, 401, 403, 404, 503)},
        operation_id="assignment_jobs_results",
        summary="Per-user results of an assignment job, in input order, of the chunks "
        "processed so far (admin only).",
    )
    async def get(self, request, id: str):
        raw_limit = request.query_params.get("limit")
        if raw_limit is None:
            limit = RESULTS_PAGE_DEFAULT
        elif (
            raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= RESULTS_PAGE_MAX
        ):
            limit = int(raw_limit)
        else:
            raise ParseError(f"limit must be an integer from 1 to {RESULTS_PAGE_MAX}.")
        cursor = jobs.parse_cursor(request.query_params.get("cursor"))
        page = await jobs.job_results_page(job_id=id, cursor=cursor, limit=limit)
        next_url = None
        if page.next_cursor is not None:
            query = request.query_params.copy()
            query["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"next": next_url, "results": result_data(page.results)})
