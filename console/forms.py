"""Console forms. Course fields are validated by the API's own serializer, so a course
the console accepts is exactly one the API accepts (and the messages are the same)."""

from datetime import UTC, datetime
from typing import Any

from django import forms
from rest_framework.exceptions import ValidationError as ApiValidationError

from courses.currencies import ISO_4217
from courses.documents import COURSE_STATUSES, Course
from courses.serializers import CourseCreateSerializer, FutureDateTimeField

# The browser's datetime-local value, read as UTC (the form says so).
_LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs) -> None:
        super().__init__(format=_LOCAL_FORMAT, **kwargs)


class DueDateField(forms.Field):
    """An optional deadline from a datetime-local control, read as UTC and validated as
    the API's `due_at` (FutureDateTimeField: a time, in the future, with the API's
    messages). Cleans to an aware datetime, or None when left empty. The assign panel and
    the upload form both use it."""

    widget = DateTimeLocalInput
    MAX_LENGTH = 32

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("label", "Due date (UTC)")
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> datetime | None:
        text = str(value or "").replace("\x00", "").strip()[: self.MAX_LENGTH]
        if not text:
            return None
        try:
            return FutureDateTimeField().run_validation(f"{text}Z")
        except ApiValidationError as exc:
            raise forms.ValidationError(" ".join(str(m) for m in exc.detail)) from None


class UploadJobForm(forms.Form):
    """The upload page: a CSV file, a due date for its rows without one, and whether to
    seat users past the course's capacity."""

    file = forms.FileField(
        label="CSV file",
        # An empty file is the service's to name ("The CSV is empty: ...").
        allow_empty_file=True,
        error_messages={"required": "Choose a CSV file to upload."},
    )
    due_at = DueDateField()
    override_capacity = forms.BooleanField(label="Override capacity", required=False)


class CourseForm(forms.Form):
    course_title = forms.CharField(label="Title", max_length=200)
    course_description = forms.CharField(
        label="Description", required=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    amount = forms.CharField(
        label="Price",
        max_length=16,
        help_text="0.00 for free training; at most two decimal places.",
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
    currency = forms.ChoiceField(
        label="Currency", choices=[(c, c) for c in sorted(ISO_4217)], initial="USD"
    )
    capacity = forms.CharField(
        label="Capacity",
        required=False,
        max_length=19,
        help_text="Seats; leave empty for unlimited.",
        widget=forms.TextInput(attrs={"inputmode": "numeric"}),
    )
    enrollment_opens_at = forms.CharField(
        label="Enrollment opens (UTC)",
        required=False,
        help_text="Empty: open now.",
        widget=DateTimeLocalInput(),
    )
    enrollment_closes_at = forms.CharField(
        label="Enrollment closes (UTC)",
        required=False,
        help_text="Empty: never closes.",
        widget=DateTimeLocalInput(),
    )
    status = forms.ChoiceField(
        label="Status", choices=[(s, s.capitalize()) for s in COURSE_STATUSES], initial="open"
    )

    @classmethod
    def for_course(cls, course: Course) -> "CourseForm":
        def local(moment: datetime | None) -> str:
            return moment.astimezone(UTC).strftime(_LOCAL_FORMAT) if moment else ""

        return cls(
            initial={
                "course_title": course.course_title,
                "course_description": course.course_description,
                "amount": f"{course.amount:.2f}",
                "currency": course.currency,
                "capacity": "" if course.capacity is None else str(course.capacity),
                "enrollment_opens_at": local(course.enrollment_opens_at),
                "enrollment_closes_at": local(course.enrollment_closes_at),
                "status": course.status,
            }
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        capacity = data["capacity"].strip()
        if capacity and not (capacity.isascii() and capacity.isdigit()):
            self.add_error("capacity", "Enter a whole number of seats, or leave it empty.")
            return data
        payload = {
            "course_title": data["course_title"],
            "course_description": data["course_description"],
            "display_price": {"amount": data["amount"].strip(), "currency": data["currency"]},
            "capacity": int(capacity) if capacity else None,
            "enrollment_opens_at": _utc(data["enrollment_opens_at"]),
            "enrollment_closes_at": _utc(data["enrollment_closes_at"]),
            "status": data["status"],
        }
        serializer = CourseCreateSerializer(data=payload)
        if not serializer.is_valid():
            for name, messages in _flat_errors(serializer.errors):
                self.add_error(name if name in self.fields else None, messages)
            return data
        self.validated = serializer.validated_data
        return data


def _utc(value: str) -> str | None:
    value = value.strip()
    return f"{value}Z" if value else None


def _flat_errors(errors: dict) -> list[tuple[str, list[str]]]:
    """The serializer's errors by form field: `display_price.amount` is the `amount` field."""
    flat = []
    for name, messages in errors.items():
        if isinstance(messages, dict):
            flat.extend(_flat_errors(messages))
        else:
            flat.append((name, [str(m) for m in messages]))
    return flat
