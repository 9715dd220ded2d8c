"""Course and enrollment rules (writes)."""

from decimal import Decimal

from common.errors import NotFound, ServiceUnavailable
from courses import repository
from courses.documents import Course, EnrolledUser, Enrollment

COURSE_NOT_FOUND = "Course not found."


async def course_create(
    *,
    course_title: str,
    course_description: str,
    amount: Decimal,
    currency: str,
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
    )
    if not await repository.course_insert(course):
        existing = await repository.course_get(course.id)
        if existing is None:
            raise ServiceUnavailable("Could not create the course; retry the request.")
        return existing
    return course


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
    if not await repository.course_exists(course_id):
        raise NotFound(COURSE_NOT_FOUND)
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
    if existing is None:
        counted = await repository.course_add_enrolled(course_id, [EnrolledUser(user_id, username)])
        if counted is None and not await repository.course_exists(course_id, fresh=True):
            # Only if the course was removed behind the service's back after it was seen
            # to exist (see repository.course_exists): take the enrollment back.
            await repository.enrollment_delete(enrollment.id)
            raise NotFound(COURSE_NOT_FOUND)
        return enrollment, True
    # A repeat: re-apply the guarded update, a no-op unless an earlier attempt failed
    # between its two writes.
    await repository.course_add_enrolled(
        course_id, [EnrolledUser(existing.user_id, existing.username)]
    )
    return existing, False


async def enrollments_count_into_course(course_id: str, users: list[EnrolledUser]) -> int:
    """Add newly enrolled `users` to the course counters once; returns the new `enrollers`.

    The guarded update is all-or-nothing, so when a concurrent repeat request already
    counted one of them in (see `enrollment_create`), re-read which are present and retry
    with the rest. Only users whose enrollment this caller inserted are passed here, so
    each can be counted in by at most one other request and the loop ends quickly.
    """
    pending = users
    for _ in range(len(users) + 1):  # each retry has at least one user fewer
        enrollers = await repository.course_add_enrolled(course_id, pending)
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
