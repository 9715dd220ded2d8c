"""Course and enrollment rules (writes)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from common.errors import Conflict, CourseFull, InvalidInput, NotFound, ServiceUnavailable
from courses import repository
from courses.documents import COURSE_OPEN, Admission, Course, EnrolledUser, Enrollment

COURSE_NOT_FOUND = "Course not found."
WINDOW_ORDER = "enrollment_opens_at must be earlier than enrollment_closes_at."


class CourseArchived(Conflict):
    code = "course_archived"
    default_detail = "The course is archived: it takes no new enrollments or assignments."


class EnrollmentClosed(Conflict):
    code = "enrollment_closed"
    default_detail = "The course's enrollment window is not open."


_REFUSALS = {CourseArchived.code: CourseArchived, EnrollmentClosed.code: EnrollmentClosed}


def refusal_error(
    admission: Admission, moment: datetime, *, self_enrollment: bool
) -> Conflict | None:
    """The 409 a new enrollment at `moment` gets, or None when the course takes it."""
    reason = admission.refusal(moment, self_enrollment=self_enrollment)
    return None if reason is None else _REFUSALS[reason]()


async def course_create(
    *,
    course_title: str,
    course_description: str,
    amount: Decimal,
    currency: str,
    capacity: int | None = None,
    enrollment_opens_at: datetime | None = None,
    enrollment_closes_at: datetime | None = None,
    status: str = COURSE_OPEN,
    course_id: str | None = None,
) -> Course:
    """Create a course; with a caller-chosen `course_id` (an Idempotency-Key retry, see
    courses/idempotency.py) a course that already has that id is returned instead."""
    created_at = repository.now()
    course = Course(
        id=course_id or repository.new_id(),
        course_title=course_title,
        course_description=course_description,
        amount=amount.quantize(Decimal("0.01")),
        currency=currency,
        enrollers=0,
        created_at=created_at,
        updated_at=created_at,
        capacity=capacity,
        enrollment_opens_at=enrollment_opens_at,
        enrollment_closes_at=enrollment_closes_at,
        status=status,
    )
    if not await repository.course_insert(course):
        existing = await repository.course_get(course.id)
        if existing is None:
            raise ServiceUnavailable("Could not create the course; retry the request.")
        return existing
    return course


async def course_update(*, course_id: str, changes: dict[str, Any]) -> Course:
    """Change a course's fields in one atomic update (validated input, Course field names).

    Enrollment counts are never touched: lowering `capacity` below `enrollers` removes
    nobody. A window bound changed alone must stay on its side of the stored other bound;
    the update's own filter checks that, so no concurrent PATCH can slip in between.
    """
    if "amount" in changes:
        changes = {**changes, "amount": changes["amount"].quantize(Decimal("0.01"))}
    course = await repository.course_update(course_id, changes)
    if course is not None:
        return course
    if not await repository.course_exists(course_id, fresh=True):
        raise NotFound(COURSE_NOT_FOUND)
    changed = "enrollment_opens_at" if "enrollment_opens_at" in changes else "enrollment_closes_at"
    raise InvalidInput(f"{WINDOW_ORDER} (the other bound is the stored one)", field=changed)


async def enrollment_create(
    *,
    course_id: str,
    user_id: int,
    username: str,
    source: str = "self",
    assigned_by: int | None = None,
) -> tuple[Enrollment, bool]:
    """Enroll a user exactly once; returns (enrollment, created).

    The unique (course_id, user_id) index decides who wins a race: only the request whose
    insert succeeded counts the user into the course. A repeat returns the existing
    enrollment and re-applies the guarded course update, which changes nothing when the
    course is consistent and completes the work of an earlier attempt that failed between
    its two writes — so a retried request converges to the invariant.
    """
    admission = await repository.course_admission(course_id)
    if admission is None:
        raise NotFound(COURSE_NOT_FOUND)
    refused = refusal_error(admission, repository.now(), self_enrollment=source == "self")
    if refused is not None:
        # The remembered state is a hint either way: another process may have reopened
        # the course. Refusing is the rare path, so confirm it with a fresh read.
        admission = await repository.course_admission(course_id, fresh=True)
        if admission is None:
            raise NotFound(COURSE_NOT_FOUND)
        refused = refusal_error(admission, repository.now(), self_enrollment=source == "self")
    if refused is not None:
        return await _existing_or_refuse(course_id, user_id, refused)
    return await enrollment_create_in_course(
        course_id=course_id,
        user_id=user_id,
        username=username,
        source=source,
        assigned_by=assigned_by,
    )


async def enrollment_create_in_course(
    *, course_id: str, user_id: int, username: str, source: str, assigned_by: int | None
) -> tuple[Enrollment, bool]:
    """`enrollment_create` for a course the caller has just seen exist."""
    enrollment = Enrollment(
        id=repository.new_id(),
        user_id=user_id,
        username=username,
        course_id=course_id,
        status="active",
        enrolled_at=repository.now(),
        source=source,
        assigned_by=assigned_by,
    )
    existing = await repository.enrollment_insert_or_get(enrollment)
    stored = enrollment if existing is None else existing
    try:
        # A repeat re-applies the guarded update: a no-op unless an earlier attempt failed
        # between its two writes. A self-enrollment is counted only while the course takes
        # self-enrollments (see _settle_uncounted, which may be taking this one back).
        counted = await repository.course_add_enrolled(
            course_id,
            [EnrolledUser(stored.user_id, stored.username)],
            self_enrollment_at=_self_moment(
                stored, enrollment.enrolled_at if existing is None else repository.now()
            ),
        )
    except CourseFull:
        # The user is not in the full course's array (the guard would not have matched):
        # take the uncounted enrollment back, so the 409 leaves nothing behind.
        await repository.enrollment_delete(stored.id)
        raise
    if existing is not None:
        return existing, False
    if counted is None:
        await _settle_uncounted(enrollment)
    return enrollment, True


def _self_moment(enrollment: Enrollment, moment: datetime) -> datetime | None:
    """The moment whose admission rules a counting write checks; None for admin
    assignments, which the service checked before writing and windows do not bind."""
    return moment if enrollment.source == "self" else None


async def _existing_or_refuse(
    course_id: str, user_id: int, refused: Conflict
) -> tuple[Enrollment, bool]:
    """A course that takes no new enrollment still answers a repeat: 200, unchanged."""
    existing = await repository.enrollment_find(course_id, user_id)
    if existing is None:
        raise refused
    return existing, False


async def _settle_uncounted(enrollment: Enrollment) -> None:
    """The enrollment was inserted but its counting write did not match: find out why.

    Either a concurrent repeat counted the user first (nothing to do), or the course
    refuses it — archived or outside the window as seen by the counting write itself,
    which a process's cache cannot know — or the course was removed behind the service's
    back: then the enrollment is taken back and the caller gets the 409 or 404.
    """
    state = await repository.course_admission_counting(enrollment.course_id, enrollment.user_id)
    if state is None:
        await repository.enrollment_delete(enrollment.id)
        raise NotFound(COURSE_NOT_FOUND)
    admission, counted = state
    if counted:
        return
    # Only self-enrollments are counted conditionally; an admin assignment is never
    # taken back (the service checked the course before writing it).
    refused = enrollment.source == "self" and refusal_error(
        admission, enrollment.enrolled_at, self_enrollment=True
    )
    if refused:
        await repository.enrollment_delete(enrollment.id)
        raise refused
    # The course changed back (reopened) between the two reads: count once more; a
    # retried request or reconcile_enrollments completes it if this misses again.
    await repository.course_add_enrolled(
        enrollment.course_id,
        [EnrolledUser(enrollment.user_id, enrollment.username)],
        self_enrollment_at=_self_moment(enrollment, repository.now()),
    )


async def enrollments_count_into_course(course_id: str, users: list[EnrolledUser]) -> int:
    """Add newly enrolled `users` to the course counters once; returns the new `enrollers`.

    The guarded update is all-or-nothing, so when a concurrent repeat request already
    counted one of them in (see `enrollment_create`), re-read which are present and retry
    with the rest. Only users whose enrollment this caller inserted are passed here, so
    each can be counted in by at most one other request and the loop ends quickly.
    """
    pending = users
    for _ in range(len(users) + 1):  # each retry has at least one user fewer
        try:
            enrollers = await repository.course_add_enrolled(course_id, pending)
        except CourseFull:
            await _take_back_uncounted(course_id, pending)
            raise
        if enrollers is not None:
            return enrollers
        state = await repository.course_enrolled_user_ids(course_id)
        if state is None:
            raise NotFound(COURSE_NOT_FOUND)
        enrollers, present = state
        remaining = [u for u in pending if u.user_id not in present]
        if not remaining:
            return enrollers
        if len(remaining) == len(pending):
            break  # nothing explains the mismatch; leave it to reconcile_enrollments
        pending = remaining
    raise ServiceUnavailable("Could not update the course counters; retry the request.")


async def _take_back_uncounted(course_id: str, users: list[EnrolledUser]) -> None:
    """Delete the enrollments of `users` that the course does not count (all of them,
    unless a concurrent repeat request counted one in meanwhile)."""
    state = await repository.course_enrolled_user_ids(course_id)
    present = state[1] if state is not None else set()
    uncounted = [u.user_id for u in users if u.user_id not in present]
    if uncounted:
        await repository.enrollment_delete_for_users(course_id, uncounted)
