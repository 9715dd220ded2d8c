"""Plain typed documents returned by the repository; no driver types leak out."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

COURSE_OPEN = "open"
COURSE_ARCHIVED = "archived"
COURSE_STATUSES = (COURSE_OPEN, COURSE_ARCHIVED)
# `?ordering=` of the course list; a leading "-" means descending.
COURSE_ORDERINGS = (
    "created_at",
    "-created_at",
    "course_title",
    "-course_title",
    "enrollers",
    "-enrollers",
)


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
    # Version 2 administration fields; documents written before them read as these defaults.
    capacity: int | None = None
    enrollment_opens_at: datetime | None = None
    enrollment_closes_at: datetime | None = None
    status: str = COURSE_OPEN

    @property
    def seats_left(self) -> int | None:
        """Seats before the course is full; None when its capacity is unlimited."""
        if self.capacity is None:
            return None
        return max(self.capacity - self.enrollers, 0)


@dataclass(frozen=True)
class Admission:
    """What a course admits, as far as the enroll path needs to know (cacheable)."""

    status: str
    enrollment_opens_at: datetime | None
    enrollment_closes_at: datetime | None
    # Seats (None: unlimited). A hint like the rest: the counting write pins the value it
    # read (`enrollers < capacity` and `capacity == value` in its filter), so a stale one
    # makes the write miss, never oversell.
    capacity: int | None = None

    def refusal(self, moment: datetime, *, self_enrollment: bool) -> str | None:
        """Why the course takes no new enrollment at `moment` ("course_archived" or
        "enrollment_closed"), or None when it does. Windows bind self-enrollment only."""
        if self.status == COURSE_ARCHIVED:
            return "course_archived"
        if self_enrollment and not window_contains(
            self.enrollment_opens_at, self.enrollment_closes_at, moment
        ):
            return "enrollment_closed"
        return None


def millisecond_precision(moment: datetime) -> datetime:
    """`moment` cut to MongoDB's millisecond precision, so a stored time reads back equal."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def window_contains(opens: datetime | None, closes: datetime | None, moment: datetime) -> bool:
    """The enrollment window is [opens, closes); a missing bound is unbounded."""
    return (opens is None or opens <= moment) and (closes is None or moment < closes)


# Enrollment statuses (docs/api.md, "Enrollment lifecycle"). Members are active or completed.
ACTIVE = "active"
WAITLISTED = "waitlisted"
COMPLETED = "completed"
WITHDRAWN = "withdrawn"
ENROLLMENT_STATUSES = (ACTIVE, WAITLISTED, COMPLETED, WITHDRAWN)
MEMBER_STATUSES = (ACTIVE, COMPLETED)


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
    # (`courses.membership`); None when nothing is pending: the course's counters already
    # reflect the status (and on enrollments written before operations existed).
    op: int | None = None
    due_at: datetime | None = None
    completed_at: datetime | None = None
    withdrawn_at: datetime | None = None
    # While waitlisted: the FIFO key (the id of the operation that found the course full,
    # ordered by creation time); the 1-based position is computed from it at read.
    waitlist_key: int | None = None

    @property
    def is_member(self) -> bool:
        return self.status in MEMBER_STATUSES

    def is_overdue(self, moment: datetime) -> bool:
        return self.status == ACTIVE and self.due_at is not None and self.due_at < moment


@dataclass(frozen=True)
class CourseState:
    """A fresh read of what decides why a counting write missed."""

    admission: Admission
    applied: list[int]
    enrollers: int


@dataclass(frozen=True)
class CourseCounters:
    """What reconciliation compares: the counters, the embedded ids and the ledger."""

    enrollers: int
    updated_at: datetime
    enrolled_user_ids: list[int]
    applied: list[int]


@dataclass(frozen=True)
class ExistingEnrollment:
    """What an assignment needs to know of a user's enrollment it finds in place."""

    op: int | None
    status: str
    due_at: datetime | None


@dataclass(frozen=True)
class StoredAssignment:
    """A stored assign-multiple report (`results` only loaded for the detail endpoint)."""

    id: str
    course_id: str
    assigned_by: int
    created_at: datetime
    due_at: datetime | None
    override_capacity: bool
    summary: dict[str, int]
    enrollers: int
    results: list[dict] | None = None
