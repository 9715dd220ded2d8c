"""Plain typed documents returned by the repository; no driver types leak out."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class EnrolledUser:
    user_id: int
    username: str


@dataclass(frozen=True)
class Course:
    id: str
    course_title: str
    course_description: str
    amount: Decimal
    currency: str
    enrollers: int
    created_at: datetime
    updated_at: datetime
    # Only loaded when asked for: the most recent members (at most COURSE_EMBEDDED_MEMBERS).
    enrolled_users: list[EnrolledUser] | None = field(default=None)


@dataclass(frozen=True)
class Enrollment:
    id: str
    user_id: int
    username: str
    course_id: str
    status: str
    enrolled_at: datetime
    source: str
    assigned_by: int | None
    # The membership operation that counts this enrollment into its course exactly once
    # (`courses.membership`); None on enrollments written before that mechanism existed.
    op: int | None = None


@dataclass(frozen=True)
class CourseCounters:
    """What reconciliation compares: the counters, the embedded ids and the ledger."""

    enrollers: int
    updated_at: datetime
    enrolled_user_ids: list[int]
    applied: list[int]
