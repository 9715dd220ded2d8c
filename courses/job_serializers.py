"""Assignment jobs: request schema and output (API.md "Admin assignment, version 2")."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from courses import jobs
from courses.job_repository import STATUSES, AssignmentJob
from courses.serializers import (
    IDENTIFIER_FIELDS,
    MAX_USER_ID,
    AssignMultipleSerializer,
    IdentifierListField,
    ReportResultSerializer,
    ReportSummarySerializer,
    StrictBooleanField,
    UserIdListField,
    _iso_or_none,
    query_flag,
)


# assign-multiple's list fields, bounded by JOB_MAX_USERS instead (validated in one pass:
# no field object per item, for a million of them).
@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_USER_ID},
        "minItems": 1,
        "maxItems": settings.JOB_MAX_USERS,
    }
)
class JobUserIdListField(UserIdListField):
    limit_setting = "JOB_MAX_USERS"


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 254},
        "minItems": 1,
        "maxItems": settings.JOB_MAX_USERS,
    }
)
class JobIdentifierListField(IdentifierListField):
    limit_setting = "JOB_MAX_USERS"


# assign-multiple's body (exactly one of user_ids, usernames, emails; due_at, dry_run,
# override_capacity), up to JOB_MAX_USERS users. (No docstring: it would be the schema's
# description; see CourseUpdateSerializer.)
class AssignmentJobCreateSerializer(AssignMultipleSerializer):
    user_ids = JobUserIdListField(required=False)
    usernames = JobIdentifierListField(
        max_length=150, required=False, help_text="Compared as login compares them."
    )
    emails = JobIdentifierListField(
        max_length=254, required=False, help_text="Compared case-insensitively."
    )
    dry_run = StrictBooleanField(
        default=False,
        help_text="A job that computes every user's result and writes no enrollment.",
    )


@dataclass(frozen=True)
class JobInput:
    """A validated JSON body, ready for courses.jobs.job_create."""

    values: list[Any]
    kind: str
    due_at: datetime | None
    dry_run: bool
    override_capacity: bool
    with_identifiers: bool


def job_json_input(body: Any, request: Any) -> JobInput:
    """Validate a JSON body (400 otherwise); `?dry_run=` and `?override_capacity=` apply
    as for assign-multiple."""
    serializer = AssignmentJobCreateSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    name = next(n for n in IDENTIFIER_FIELDS if n in data)
    return JobInput(
        values=data[name],
        kind=IDENTIFIER_FIELDS[name],
        due_at=data["due_at"],
        dry_run=query_flag(request, "dry_run") or data["dry_run"],
        override_capacity=query_flag(request, "override_capacity") or data["override_capacity"],
        with_identifiers=name != "user_ids",
    )


class AssignmentJobSerializer(serializers.Serializer):
    id = serializers.CharField()
    course_id = serializers.CharField()
    status = serializers.ChoiceField(choices=list(STATUSES))
    total = serializers.IntegerField()
    processed = serializers.IntegerField()
    summary = ReportSummarySerializer()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    dry_run = serializers.BooleanField(
        help_text="A dry-run job: its summary and results say what would happen; nothing "
        "was enrolled."
    )
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="Estimated seconds left, while running."
    )


class AssignmentJobResultsSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    results = ReportResultSerializer(many=True)


def job_data(job: AssignmentJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "course_id": job.course_id,
        "status": job.status,
        "total": job.total,
        "processed": job.processed,
        "summary": job.summary,
        "created_at": _iso_or_none(job.created_at),
        "finished_at": _iso_or_none(job.finished_at),
        "error": job.error,
        "dry_run": job.dry_run,
        "eta_seconds": jobs.job_eta_seconds(job),
    }


def result_data(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored as assign-multiple renders them (with "user" unless the job named users by
    JSON user_ids)."""
    return results
