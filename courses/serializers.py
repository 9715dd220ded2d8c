"""Course input validation, output rendering, and the OpenAPI shapes of both.

Output is rendered by plain functions (`course_data`, `enrollment_data`): DRF serializers
cost several times more CPU per object on the hot paths. The `*Serializer` output classes
describe the same shapes for the OpenAPI schema; the contract tests keep the two in step.
"""

import re
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from asgi_app.serializers import StrictCharField, StrictSerializer
from courses.currencies import ISO_4217
from courses.documents import (
    COURSE_OPEN,
    COURSE_ORDERINGS,
    COURSE_STATUSES,
    ENROLLMENT_STATUSES,
    Course,
    Enrollment,
    millisecond_precision,
)

MAX_USER_ID = 2**63 - 1


# Input


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: no strings, floats or booleans, within a 64-bit id's range."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_USER_ID)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_USER_ID},
        "minItems": 1,
        "maxItems": settings.ASSIGN_MAX_USERS,
    }
)
class UserIdListField(serializers.Field):
    """A non-empty list of user ids, at most ASSIGN_MAX_USERS long; validated in one pass."""

    default_error_messages = {
        "not_a_list": "Expected a list of user ids.",
        "empty": "This list may not be empty.",
        "too_long": "At most {max} user ids per request.",
        "invalid_item": "Item {index} is not a valid user id (a positive integer).",
    }

    def to_internal_value(self, data: Any) -> list[int]:
        if not isinstance(data, list):
            self.fail("not_a_list")
        if not data:
            self.fail("empty")
        if len(data) > settings.ASSIGN_MAX_USERS:
            self.fail("too_long", max=settings.ASSIGN_MAX_USERS)
        for index, item in enumerate(data):
            if type(item) is not int or not 1 <= item <= MAX_USER_ID:
                self.fail("invalid_item", index=index)
        return data

    def to_representation(self, value: list[int]) -> list[int]:
        return value


_PRICE = re.compile(r"[0-9]+(\.[0-9]{1,2})?")


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$"}
)
class PriceAmountField(serializers.DecimalField):
    """A price: ASCII digits with at most two decimal places, as a string (`"49.99"`) or
    a JSON number that reads the same (`49.99`, `5`).

    Python's Decimal also takes `-0`, other scripts' digits (`"\u0661\u0662"`), `1_000`
    and exponents; those were accepted and `-0` rendered as `"-0.00"`, outside our own
    output schema. Up to 10 digits before the point (DecimalField's max_digits check).
    """

    default_error_messages = {
        "invalid": 'Enter a decimal amount with at most two decimal places, e.g. "49.99".'
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(max_digits=12, decimal_places=2, coerce_to_string=True, **kwargs)

    def to_internal_value(self, data: Any):
        # repr of a JSON number: 49.99 -> "49.99", -0.0 -> "-0.0", 1e16 -> "1e+16".
        text = data if isinstance(data, str) else repr(data) if type(data) in (int, float) else ""
        if not _PRICE.fullmatch(text):
            self.fail("invalid")
        return super().to_internal_value(text)


class PriceSerializer(StrictSerializer):
    amount = PriceAmountField()
    currency = StrictCharField(min_length=3, max_length=3)

    def validate_currency(self, value: str) -> str:
        if value not in ISO_4217:
            raise serializers.ValidationError("Not an ISO 4217 currency code (e.g. USD, EUR).")
        return value


class UtcDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time string with `Z` or an explicit offset, returned in UTC at MongoDB's
    millisecond precision. A time without an offset is ambiguous and refused."""

    default_error_messages = {
        "invalid": "Expected an ISO 8601 time such as 2026-01-31T09:00:00Z.",
        "naive": "Give the time zone: a Z or +00:00 suffix.",
    }

    def to_internal_value(self, value: Any):
        if not isinstance(value, str):
            self.fail("invalid")
        try:
            parsed = parse_datetime(value.strip())
            if parsed is not None and parsed.tzinfo is not None:
                return millisecond_precision(parsed.astimezone(UTC))
        except (ValueError, OverflowError):  # a field out of range, a year beyond 9999
            self.fail("invalid")
        self.fail("invalid" if parsed is None else "naive")


def _check_window(attrs: dict[str, Any]) -> None:
    opens, closes = attrs.get("enrollment_opens_at"), attrs.get("enrollment_closes_at")
    if opens is not None and closes is not None and opens >= closes:
        raise serializers.ValidationError(
            {"enrollment_closes_at": ["Must be later than enrollment_opens_at."]}
        )


def _capacity(**kwargs) -> StrictIntegerField:
    return StrictIntegerField(
        allow_null=True, help_text="Seats (at least 1); null means unlimited.", **kwargs
    )


def _window_bound(**kwargs) -> UtcDateTimeField:
    return UtcDateTimeField(allow_null=True, **kwargs)


class CourseCreateSerializer(StrictSerializer):
    course_title = StrictCharField(max_length=200)
    course_description = StrictCharField(max_length=10_000, allow_blank=True)
    display_price = PriceSerializer()
    capacity = _capacity(default=None)
    enrollment_opens_at = _window_bound(
        default=None, help_text="Self-enrollment opens at this time; null: already open."
    )
    enrollment_closes_at = _window_bound(
        default=None, help_text="Self-enrollment closes at this time; null: never closes."
    )
    status = serializers.ChoiceField(COURSE_STATUSES, default=COURSE_OPEN)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _check_window(attrs)
        return attrs


# Fields of COURSE a PATCH cannot change: named as read-only rather than unknown.
COURSE_READ_ONLY = (
    "id",
    "enrollers",
    "enrolled_users",
    "seats_left",
    "created_at",
    "updated_at",
)


# The fields a PATCH may change, each optional; at least one. (No docstring: the schema
# marks StrictSerializer bodies by the inherited one, see asgi_app.schema.)
class CourseUpdateSerializer(StrictSerializer):
    course_title = StrictCharField(max_length=200, required=False)
    course_description = StrictCharField(max_length=10_000, allow_blank=True, required=False)
    display_price = PriceSerializer(required=False)
    capacity = _capacity(required=False)
    enrollment_opens_at = _window_bound(required=False)
    enrollment_closes_at = _window_bound(required=False)
    status = serializers.ChoiceField(COURSE_STATUSES, required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            read_only = [name for name in COURSE_READ_ONLY if name in data]
            if read_only:
                raise serializers.ValidationError(
                    {name: ["This field is read-only."] for name in read_only}
                )
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send at least one field to change.")
        _check_window(attrs)
        return attrs


def course_changes(validated: dict[str, Any]) -> dict[str, Any]:
    """A validated PATCH body in the Course's own field names (the price split in two)."""
    changes = dict(validated)
    price = changes.pop("display_price", None)
    if price is not None:
        changes["amount"], changes["currency"] = price["amount"], price["currency"]
    return changes


class CourseListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        [*COURSE_STATUSES, "all"],
        default=COURSE_OPEN,
        help_text="`open` (default); `archived` and `all` are for admins only (403 otherwise).",
    )
    search = serializers.CharField(
        max_length=200,
        allow_blank=True,
        default="",
        help_text="Every word must start a word of the title (case-insensitive).",
    )
    ordering = serializers.ChoiceField(
        COURSE_ORDERINGS, default="-created_at", help_text="A leading - sorts descending."
    )


class EnrollmentQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(ENROLLMENT_STATUSES, required=False)
    overdue = serializers.BooleanField(
        required=False, default=False, help_text="`true`: only active enrollments past due."
    )


class RosterQuerySerializer(EnrollmentQuerySerializer):
    search = serializers.CharField(
        max_length=150,
        allow_blank=True,
        default="",
        help_text="Usernames starting with this text (case-insensitive).",
    )
    cursor = serializers.RegexField(
        r"^[0-9a-f]{24}$", required=False, help_text="From the previous page's `next`."
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=1000, default=100, help_text="Page size (default 100)."
    )
    format = serializers.ChoiceField(
        ["json", "csv"], default="json", help_text="`csv` streams the whole roster."
    )


class AssignSerializer(StrictSerializer):
    user_id = StrictIntegerField()


class AssignMultipleSerializer(StrictSerializer):
    user_ids = UserIdListField()


# Output


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _iso_or_none(moment) -> str | None:
    return None if moment is None else _iso(moment)


def course_data(course: Course, *, with_enrolled_users: bool = False) -> dict[str, Any]:
    data = {
        "id": course.id,
        "course_title": course.course_title,
        "course_description": course.course_description,
        "display_price": {"amount": f"{course.amount:.2f}", "currency": course.currency},
        "enrollers": course.enrollers,
        "created_at": _iso(course.created_at),
        "capacity": course.capacity,
        "seats_left": course.seats_left,
        "enrollment_opens_at": _iso_or_none(course.enrollment_opens_at),
        "enrollment_closes_at": _iso_or_none(course.enrollment_closes_at),
        "status": course.status,
        "updated_at": _iso(course.updated_at),
    }
    if with_enrolled_users:
        data["enrolled_users"] = [
            {"user_id": u.user_id, "username": u.username} for u in course.enrolled_users or []
        ]
    return data


def enrollment_data(
    enrollment: Enrollment, *, position: int | None = None, moment=None
) -> dict[str, Any]:
    """ENROLLMENT; `position` is the waitlist position (computed by the caller for
    waitlisted enrollments), `moment` the time `is_overdue` is judged at (default: now)."""
    return {
        "id": enrollment.id,
        "user_id": enrollment.user_id,
        "username": enrollment.username,
        "course_id": enrollment.course_id,
        "status": enrollment.status,
        "enrolled_at": _iso(enrollment.enrolled_at),
        "source": enrollment.source,
        "assigned_by": enrollment.assigned_by,
        "due_at": _iso_or_none(enrollment.due_at),
        "completed_at": _iso_or_none(enrollment.completed_at),
        "withdrawn_at": _iso_or_none(enrollment.withdrawn_at),
        "waitlist_position": position,
        "is_overdue": enrollment.is_overdue(moment or datetime.now(UTC)),
    }


CSV_COLUMNS = ("user_id", "username", "status", "enrolled_at", "due_at", "completed_at")


def enrollment_csv_row(enrollment: Enrollment) -> list[Any]:
    return [
        enrollment.user_id,
        enrollment.username,
        enrollment.status,
        _iso(enrollment.enrolled_at),
        _iso_or_none(enrollment.due_at) or "",
        _iso_or_none(enrollment.completed_at) or "",
    ]


# OpenAPI shapes of the output


class PriceOutSerializer(serializers.Serializer):
    amount = serializers.RegexField(
        r"^[0-9]+\.[0-9]{2}$", help_text="Decimal string with two places, e.g. 49.99."
    )
    currency = serializers.CharField(help_text="ISO 4217 code.")


class EnrolledUserSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()


class CourseSerializer(serializers.Serializer):
    id = serializers.RegexField(r"^[0-9a-f]{24}$", help_text="ObjectId, 24 lowercase hex.")
    course_title = serializers.CharField()
    course_description = serializers.CharField()
    display_price = PriceOutSerializer()
    enrollers = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    capacity = serializers.IntegerField(
        min_value=1, allow_null=True, help_text="Seats; null means unlimited."
    )
    seats_left = serializers.IntegerField(
        min_value=0,
        allow_null=True,
        help_text="max(capacity - enrollers, 0); null when the capacity is unlimited.",
    )
    enrollment_opens_at = serializers.DateTimeField(
        allow_null=True, help_text="Self-enrollment opens at this time (null: open)."
    )
    enrollment_closes_at = serializers.DateTimeField(
        allow_null=True, help_text="Self-enrollment closes at this time (null: never)."
    )
    status = serializers.ChoiceField(
        COURSE_STATUSES, help_text="Archived courses take no new enrollments or assignments."
    )
    updated_at = serializers.DateTimeField(
        help_text="Last change of the course, its enrollment counts included."
    )
    enrolled_users = EnrolledUserSerializer(
        many=True, required=False, help_text="Admins only, on the detail endpoint."
    )


class EnrollmentSerializer(serializers.Serializer):
    id = serializers.CharField()
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    course_id = serializers.CharField()
    status = serializers.ChoiceField(
        choices=ENROLLMENT_STATUSES,
        help_text="`active` and `completed` are members (counted in `enrollers`); "
        "`waitlisted` waits for a seat (FIFO); `withdrawn` left.",
    )
    enrolled_at = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=["self", "admin"])
    assigned_by = serializers.IntegerField(
        allow_null=True, help_text="The admin who assigned it; null for self-enrollment."
    )
    due_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    waitlist_position = serializers.IntegerField(
        min_value=1, allow_null=True, help_text="1-based FIFO position while waitlisted."
    )
    is_overdue = serializers.BooleanField(help_text="Active and `due_at` has passed.")


class MyEnrollmentSerializer(EnrollmentSerializer):
    course_title = serializers.CharField(allow_null=True)


class ReportSummarySerializer(serializers.Serializer):
    requested = serializers.IntegerField()
    enrolled = serializers.IntegerField()
    already_enrolled = serializers.IntegerField()
    not_found = serializers.IntegerField()
    inactive = serializers.IntegerField()
    duplicates_in_request = serializers.IntegerField()


class ReportResultSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["enrolled", "already_enrolled", "not_found", "inactive"]
    )


class AssignmentReportSerializer(serializers.Serializer):
    course_id = serializers.CharField()
    summary = ReportSummarySerializer()
    results = ReportResultSerializer(many=True)
    enrollers = serializers.IntegerField()


class RosterPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    results = EnrollmentSerializer(many=True)


class StatusCountsSerializer(serializers.Serializer):
    active = serializers.IntegerField()
    waitlisted = serializers.IntegerField()
    completed = serializers.IntegerField()
    withdrawn = serializers.IntegerField()


class CourseReportSerializer(serializers.Serializer):
    course_id = serializers.CharField()
    counts = StatusCountsSerializer()
    members = serializers.IntegerField(help_text="active + completed.")
    capacity = serializers.IntegerField(allow_null=True)
    seats_left = serializers.IntegerField(allow_null=True)
    overdue = serializers.IntegerField()
    completion_rate = serializers.FloatField(help_text="completed / members, 4 decimals.")
