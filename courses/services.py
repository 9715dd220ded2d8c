"""Course and enrollment rules (writes)."""

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from common.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from courses import membership, repository
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


logger = logging.getLogger("courses.membership")


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

    The unique (course_id, user_id) index decides who wins a race: one enrollment exists,
    carrying the membership operation that counts it into the course (courses.membership).
    Whoever sees that operation unapplied applies it, and the course update is filtered on
    the course's ledger of applied operations, so it is counted once: a repeat or a retry
    after a failure between the two writes converges, whichever request gets there first.
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
    *,
    course_id: str,
    user_id: int,
    username: str,
    source: str,
    assigned_by: int | None,
    due_at: datetime | None = None,
) -> tuple[Enrollment, bool]:
    """`enrollment_create` for a course the caller has just seen exist: two commands, the
    enrollment upsert and the guarded course update. `due_at` is set on a new enrollment
    only (an existing one is returned as it is)."""
    enrollment = Enrollment(
        id=repository.new_id(),
        user_id=user_id,
        username=username,
        course_id=course_id,
        status="active",
        enrolled_at=repository.now(),
        source=source,
        assigned_by=assigned_by,
        op=membership.new_op(bulk=False),
        due_at=due_at,
    )
    existing = await repository.enrollment_insert_or_get(enrollment)
    if existing is None:
        if await _apply_single(enrollment, enrollment.enrolled_at) is None:
            await _settle_unapplied(enrollment)
        return enrollment, True
    # A repeat: re-apply the enrollment's operation, a no-op unless an earlier attempt
    # failed between its two writes. Enrollments of a bulk operation are the bulk path's
    # (a repeat of that assignment adopts them); older ones were counted by version 1.
    if existing.op is not None and not membership.is_bulk(existing.op):
        await _apply_single(existing, repository.now())
    return existing, False


def _self_moment(enrollment: Enrollment, moment: datetime) -> datetime | None:
    """The moment whose admission rules a counting write checks; None for admin
    assignments, which the service checked before writing and windows do not bind."""
    return moment if enrollment.source == "self" else None


async def _apply_single(enrollment: Enrollment, moment: datetime) -> int | None:
    if enrollment.op is None:
        return None  # counted before operations existed
    member = EnrolledUser(enrollment.user_id, enrollment.username)
    return await repository.course_apply_op(
        enrollment.course_id,
        enrollment.op,
        count=1,
        members=[member],
        self_enrollment_at=_self_moment(enrollment, moment),
    )


async def _existing_or_refuse(
    course_id: str, user_id: int, refused: Conflict
) -> tuple[Enrollment, bool]:
    """A course that takes no new enrollment still answers a repeat: 200, unchanged."""
    existing = await repository.enrollment_find(course_id, user_id)
    if existing is None:
        raise refused
    return existing, False


async def _settle_unapplied(enrollment: Enrollment) -> None:
    """The enrollment was inserted but its operation did not apply: find out why.

    The course was removed behind the service's back (take the enrollment back: 404); a
    concurrent repeat applied the operation first (nothing to do); the course refuses a
    self-enrollment — archived or outside the window as seen by the counting write itself,
    which a process's cache cannot know — (take it back: the 409); or it changed back
    (reopened) between the two reads: apply once more. If that misses too, more than
    APPLIED_OPS newer operations were applied while this request sat between its writes
    and it fell out of the ledger's window: the course is one short until
    reconcile_enrollments runs. Say so loudly, that should never happen.
    """
    state = await repository.course_admission_ledger(enrollment.course_id)
    if state is None:
        await repository.enrollment_delete(enrollment.id)
        raise NotFound(COURSE_NOT_FOUND)
    admission, ledger = state
    if enrollment.op in ledger:
        return
    # Only self-enrollments are counted conditionally; an admin assignment is never
    # taken back (the service checked the course before writing it).
    refused = enrollment.source == "self" and refusal_error(
        admission, enrollment.enrolled_at, self_enrollment=True
    )
    if refused:
        await repository.enrollment_delete(enrollment.id)
        raise refused
    if await _apply_single(enrollment, repository.now()) is None:
        logger.warning(
            "membership operation not applied; run reconcile_enrollments",
            extra={"course_id": enrollment.course_id, "op": enrollment.op},
        )


# Bulk operations adopt at most this many retired operations' enrollments per request, and
# give up after this many rounds of losing their own operation to a concurrent adopter.
MAX_ADOPTED_OPS = 16
MAX_ROUNDS = 5


async def membership_apply_bulk(
    course_id: str, op: int, inserted: list[EnrolledUser], found_ops: set[int]
) -> int:
    """Count a bulk assignment into the course once; returns the new `enrollers`.

    `inserted` are the enrollments this request wrote under `op` (request order);
    `found_ops` the operations of the requested users who were enrolled already. Among
    those, a bulk operation that was never applied is an assignment that failed (or is
    still running) between its insert and its course update: it is retired on the course,
    which makes its own course update impossible, and its enrollments are moved under `op`
    and counted with this request's. If our own operation is retired that way by a
    concurrent request, the enrollments still under it are moved to a fresh one. Every
    enrollment thus ends under exactly one operation, applied exactly once.
    """
    adopted = 0
    stale = [o for o in found_ops if membership.is_bulk(o) and o != op][:MAX_ADOPTED_OPS]
    if stale:
        retired = await _retired_among(course_id, stale)
        if retired:
            adopted = await repository.enrollment_restamp(course_id, retired, op)
    count = len(inserted) + adopted
    for _ in range(MAX_ROUNDS):
        if adopted:
            members = await repository.enrollment_members_of_op(
                course_id, op, limit=settings.COURSE_EMBEDDED_MEMBERS
            )
        else:
            members = inserted[-settings.COURSE_EMBEDDED_MEMBERS :]
        if count == 0:
            enrollers = await repository.course_enrollers(course_id)
        else:
            enrollers = await repository.course_apply_op(
                course_id, op, count=count, members=members
            )
        if enrollers is not None:
            return enrollers
        if await repository.course_ledger(course_id) is None:
            raise NotFound(COURSE_NOT_FOUND)
        # Our operation was retired by a concurrent adopter (or fell out of the ledger's
        # window while we inserted): nobody else applies bulk operations, so what is still
        # under it is uncounted. Move it to a fresh operation and count that.
        fresh = membership.new_op(bulk=True)
        count = adopted = await repository.enrollment_restamp(course_id, [op], fresh)
        op = fresh
    raise ServiceUnavailable("Could not update the course counters; retry the request.")


async def _retired_among(course_id: str, ops: list[int]) -> list[int]:
    """Which of these bulk operations are retired now: those retired before, and those
    this call retires because they were never applied (their owner failed, or is slow)."""
    ledger = await repository.course_ledger(course_id)
    if ledger is None:
        raise NotFound(COURSE_NOT_FOUND)
    recorded = set(ledger)
    retired = []
    for op in ops:
        if membership.retired(op) in recorded:
            retired.append(op)
        elif op not in recorded and await repository.course_retire_op(course_id, op):
            retired.append(op)
    return retired
