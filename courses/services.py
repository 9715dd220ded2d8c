"""Course and enrollment rules (writes)."""

import logging
from decimal import Decimal

from django.conf import settings

from common.errors import NotFound, ServiceUnavailable
from courses import membership, repository
from courses.documents import Course, EnrolledUser, Enrollment

COURSE_NOT_FOUND = "Course not found."

logger = logging.getLogger("courses.membership")


async def course_create(
    *, course_title: str, course_description: str, amount: Decimal, currency: str
) -> Course:
    created_at = repository.now()
    course = Course(
        id=repository.new_id(),
        course_title=course_title,
        course_description=course_description,
        amount=amount.quantize(Decimal("0.01")),
        currency=currency,
        enrollers=0,
        created_at=created_at,
        updated_at=created_at,
    )
    await repository.course_insert(course)
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

    The unique (course_id, user_id) index decides who wins a race: one enrollment exists,
    carrying the membership operation that counts it into the course (courses.membership).
    Whoever sees that operation unapplied applies it, and the course update is filtered on
    the course's ledger of applied operations, so it is counted once: a repeat or a retry
    after a failure between the two writes converges, whichever request gets there first.
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
    """`enrollment_create` for a course the caller has just seen exist: two commands, the
    enrollment upsert and the guarded course update."""
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
    )
    existing = await repository.enrollment_insert_or_get(enrollment)
    if existing is None:
        counted = await _apply_single(enrollment)
        if counted is None:
            if not await repository.course_exists(course_id, fresh=True):
                # Only if the course was removed behind the service's back after it was
                # seen to exist (see repository.course_exists): take the enrollment back.
                await repository.enrollment_delete(enrollment.id)
                raise NotFound(COURSE_NOT_FOUND)
            await _report_unapplied(enrollment)
        return enrollment, True
    # A repeat: re-apply the enrollment's operation, a no-op unless an earlier attempt
    # failed between its two writes. Enrollments of a bulk operation are the bulk path's
    # (a repeat of that assignment adopts them); older ones were counted by version 1.
    if existing.op is not None and not membership.is_bulk(existing.op):
        await _apply_single(existing)
    return existing, False


async def _apply_single(enrollment: Enrollment) -> int | None:
    if enrollment.op is None:
        return None  # counted before operations existed
    member = EnrolledUser(enrollment.user_id, enrollment.username)
    return await repository.course_apply_op(
        enrollment.course_id, enrollment.op, count=1, members=[member]
    )


async def _report_unapplied(enrollment: Enrollment) -> None:
    """Our fresh operation did not apply: a concurrent repeat applied it (fine), or more
    than APPLIED_OPS newer operations were applied while this request sat between its two
    writes, and it is out of the ledger's window: presumed applied, so the course is one
    short until reconcile_enrollments runs. Say so loudly, that should never happen."""
    ledger = await repository.course_ledger(enrollment.course_id)
    if ledger is not None and enrollment.op not in ledger:
        logger.warning(
            "membership operation out of the ledger window; run reconcile_enrollments",
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
