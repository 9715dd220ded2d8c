"""Course input validation, output rendering, and the OpenAPI shapes of both.

Output is rendered by plain functions (`course_data`, `enrollment_data`): DRF serializers
cost several times more CPU per object on the hot paths. The `*Serializer` output classes
describe the same shapes for the OpenAPI schema; the contract tests keep the two in step.
"""

import re
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from asgi_app.serializers import StrictCharField, StrictSerializer
from courses.currencies import ISO_4217
from courses.documents import Course, Enrollment

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


class CourseCreateSerializer(StrictSerializer):
    course_title = StrictCharField(max_length=200)
    course_description = StrictCharField(max_length=10_000, allow_blank=True)
    display_price = PriceSerializer()


class AssignSerializer(StrictSerializer):
    user_id = StrictIntegerField()


class AssignMultipleSerializer(StrictSerializer):
    user_ids = UserIdListField()


# Output


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def course_data(course: Course, *, with_enrolled_users: bool = False) -> dict[str, Any]:
    data = {
        "id": course.id,
        "course_title": course.course_title,
        "course_description": course.course_description,
        "display_price": {"amount": f"{course.amount:.2f}", "currency": course.currency},
        "enrollers": course.enrollers,
        "created_at": _iso(course.created_at),
    }
    if with_enrolled_users:
        data["enrolled_users"] = [
            {"user_id": u.user_id, "username": u.username} for u in course.enrolled_users or []
        ]
    return data


def enrollment_data(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "id": enrollment.id,
        "user_id": enrollment.user_id,
        "username": enrollment.username,
        "course_id": enrollment.course_id,
        "status": enrollment.status,
        "enrolled_at": _iso(enrollment.enrolled_at),
        "source": enrollment.source,
    }


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
    enrolled_users = EnrolledUserSerializer(
        many=True, required=False, help_text="Admins only, on the detail endpoint."
    )


class EnrollmentSerializer(serializers.Serializer):
    id = serializers.CharField()
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    course_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["active"])
    enrolled_at = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=["self", "admin"])


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
