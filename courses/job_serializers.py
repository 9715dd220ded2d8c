"""Assignment jobs: request schema and output (API.md "Admin assignment, version 2")."""

from typing import Any

from rest_framework import serializers

from courses import jobs
from courses.job_repository import STATUSES, AssignmentJob
from courses.serializers import ReportResultSerializer, ReportSummarySerializer, _iso_or_none


class AssignmentJobCreateSerializer(serializers.Serializer):
    """For the schema: the JSON body (validated by courses.jobs.json_user_ids, which does
    not build a million field objects)."""

    user_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1)


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
        "eta_seconds": jobs.job_eta_seconds(job),
    }


def result_data(results: list[tuple[Any, str]]) -> list[dict[str, Any]]:
    return [{"user_id": user_id, "status": status} for user_id, status in results]
