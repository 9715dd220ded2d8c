"""Course and enrollment rules (writes)."""

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from common.errors import Conflict, DomainError, InvalidInput, NotFound, ServiceUnavailable
from courses import membership, repository
from courses.documents import (
    ACTIVE,
    COMPLETED,
    COURSE_OPEN,
    WAITLISTED,
    WITHDRAWN,
    Admission,
    Course,
    EnrolledUser,
    Enrollment,
)

COURSE_NOT_FOUND = "Course not found."
ENROLLMENT_NOT_FOUND = "Enrollment not found."
WINDOW_ORDER = "enrollment_opens_at must be earlier than enrollment_closes_at."


class CourseArchived(Conflict):
    code = "course_archived"
    default_detail = "The course is archived: it takes no new enrollments or assignments."


class AlreadyCompleted(Conflict):
    code = "already_completed"
    default_detail = "The enrollment is completed: it can no longer be withdrawn."


class NotActive(Conflict):
    code = "not_active"
    default_detail = "Only an active enrollment can be completed."


class AssignedEnrollment(DomainError):
    status_code = 403
    code = "assigned_enrollment"
    default_detail = "An admin assigned this enrollment: only an admin can withdraw it."


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
        if "capacity" in changes and await promote_waitlisted(course_id, seats=course.seats_left):
            # Raising the capacity promotes from the waitlist at once.
            return await repository.course_get(course_id) or course
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
    """`enrollment_create` for a course the caller has just seen exist: in the common case
    (room left, or a repeat) two commands, the enrollment upsert and the guarded course
    update, which also takes the seat. `due_at` is set on a new enrollment only (an
    existing one is returned as it is)."""
    enrollment = Enrollment(
        id=repository.new_id(),
        user_id=user_id,
        username=username,
        course_id=course_id,
        status=ACTIVE,
        enrolled_at=repository.now(),
        source=source,
        assigned_by=assigned_by,
        op=membership.new_op(bulk=False),
        due_at=due_at,
    )
    existing = await repository.enrollment_insert_or_get(enrollment)
    if existing is None:
        return await _join(enrollment, enrollment.enrolled_at, inserted=True), True
    # A repeat: settle the enrollment's pending operation, a no-op unless an earlier attempt
    # failed between its two writes (or found the course full). Enrollments of a bulk
    # operation are the bulk path's (a repeat of that assignment adopts them); older ones
    # were counted by version 1. A withdrawn enrollment comes back.
    settled = await _settle(existing)
    if settled.status != WITHDRAWN:
        return settled, False
    return await _rejoin(settled, source=source, assigned_by=assigned_by), False


async def _existing_or_refuse(
    course_id: str, user_id: int, refused: Conflict
) -> tuple[Enrollment, bool]:
    """A course that takes no new enrollment still answers a repeat: 200, unchanged. A
    withdrawn enrollment coming back is a new enrollment: refused."""
    existing = await repository.enrollment_find(course_id, user_id)
    if existing is None or existing.status == WITHDRAWN:
        raise refused
    return existing, False


def _self_moment(enrollment: Enrollment, moment: datetime) -> datetime | None:
    """The moment whose admission rules a counting write checks; None for admin
    assignments, which the service checked before writing and windows do not bind."""
    return moment if enrollment.source == "self" else None


async def _apply_join(enrollment: Enrollment, moment: datetime, capacity: int | None) -> bool:
    """Count the enrollment's operation in with the seat guard; True if this call did."""
    member = EnrolledUser(enrollment.user_id, enrollment.username)
    return (
        await repository.course_apply_op(
            enrollment.course_id,
            enrollment.op,
            count=1,
            members=[member],
            self_enrollment_at=_self_moment(enrollment, moment),
            seats=repository.Seats(capacity),
        )
        is not None
    )


async def _join(enrollment: Enrollment, moment: datetime, *, inserted: bool = False) -> Enrollment:
    """Make an active enrollment whose operation is pending a member (taking a seat), or,
    when the course is full, a waitlisted one. `inserted`: this request created it, so a
    course that refuses it (archived or closed at the counting write) takes it back."""
    admission = await repository.course_admission(enrollment.course_id)
    capacity = None if admission is None else admission.capacity
    if await _apply_join(enrollment, moment, capacity):
        return enrollment
    return await _settle_join(enrollment, inserted=inserted)


def op_settled(op: int, ledger: list[int]) -> bool:
    """Whether `op` is applied, retired, or presumed applied (out of the ledger's window)."""
    if op in ledger or membership.retired(op) in ledger:
        return True
    return len(ledger) >= membership.APPLIED_OPS and op < ledger[0]


async def _settle_join(enrollment: Enrollment, *, inserted: bool) -> Enrollment:
    """A join's counting write missed: find out why and finish the transition.

    The course is gone (take back an enrollment this request inserted: 404); the operation
    was applied by a concurrent repeat (done) or retired because the course was full (the
    enrollment belongs on the waitlist); the course refuses a self-enrollment (a fresh
    insert is taken back, a re-enrollment goes back to withdrawn: 409); the course is full
    (retire the operation, so no late retry can count it, and waitlist the enrollment); or
    the capacity or state changed under us (try again with the fresh values). If the
    operation fell out of the ledger's window while the request sat between its writes, the
    course is one short until reconcile_enrollments runs: say so loudly.
    """
    for _ in range(MAX_ROUNDS):
        state = await repository.course_state(enrollment.course_id)
        if state is None:
            if inserted:
                await repository.enrollment_delete(enrollment.id)
            raise NotFound(COURSE_NOT_FOUND)
        if membership.retired(enrollment.op) in state.applied:
            return await _to_waitlist(enrollment)
        if op_settled(enrollment.op, state.applied):
            if enrollment.op not in state.applied:
                logger.warning(
                    "membership operation out of the ledger window; run reconcile_enrollments",
                    extra={"course_id": enrollment.course_id, "op": enrollment.op},
                )
            return enrollment
        refused = enrollment.source == "self" and refusal_error(
            state.admission,
            enrollment.enrolled_at if inserted else repository.now(),
            self_enrollment=True,
        )
        if refused:
            if inserted:
                await repository.enrollment_delete(enrollment.id)
            elif await repository.course_retire_op(enrollment.course_id, enrollment.op):
                await repository.enrollment_transition(
                    enrollment, {"status": WITHDRAWN, "op": None, "withdrawn_at": repository.now()}
                )
            else:
                continue
            raise refused
        capacity = state.admission.capacity
        if capacity is not None and state.enrollers >= capacity:
            if await repository.course_retire_op(enrollment.course_id, enrollment.op):
                return await _to_waitlist(enrollment)
            continue  # applied or retired meanwhile: look again
        if await _apply_join(enrollment, repository.now(), capacity):
            return enrollment
    raise ServiceUnavailable("Could not update the course counters; retry the request.")


async def _to_waitlist(enrollment: Enrollment) -> Enrollment:
    """Move an active enrollment whose join was retired (course full) onto the waitlist,
    keyed by that operation's id (its creation time: FIFO). Then, if a seat freed before
    it was visible there, promote: no withdrawal can miss a waitlisted enrollment."""
    waitlisted = await repository.enrollment_transition(
        enrollment,
        {"status": WAITLISTED, "op": None, "waitlist_key": enrollment.op},
    )
    if waitlisted is None:  # moved by a concurrent request (the same retired operation)
        current = await repository.enrollment_get(enrollment.id)
        if current is None:
            raise NotFound(ENROLLMENT_NOT_FOUND)
        return current
    await promote_waitlisted(enrollment.course_id, seats=1, check_first=True)
    return await repository.enrollment_get(enrollment.id) or waitlisted


async def _settle(enrollment: Enrollment) -> Enrollment:
    """Bring the enrollment's pending operation (if any) to its end before a transition: a
    join is counted in (or the enrollment waitlisted), a leave counted out. So no
    operation is ever overtaken unapplied, and a storm of enroll, withdraw and re-enroll
    of one user converges without reconcile."""
    op = enrollment.op
    if op is None or membership.is_bulk(op):
        return enrollment
    if enrollment.status == WITHDRAWN:
        await _apply_leave(enrollment.course_id, op, enrollment.user_id)
        return enrollment
    if enrollment.status == ACTIVE:
        # One read of the course's ledger tells whether the join is settled (the common
        # case: then nothing is written); only a pending one is applied.
        return await _settle_join(enrollment, inserted=False)
    return enrollment  # completed: its join was settled before it could be completed


async def _apply_leave(course_id: str, op: int, user_id: int) -> None:
    after = await repository.course_apply_leave(course_id, op, user_id)
    if after is None:
        return
    if user_id in after.listed:  # a duplicate entry from a repair: nothing to do here
        return
    if len(after.listed) < min(after.enrollers, settings.COURSE_EMBEDDED_MEMBERS):
        await repository.course_backfill_member(course_id, after.listed)
    if after.capacity is not None and after.enrollers < after.capacity:
        await promote_waitlisted(course_id, seats=1)


async def promote_waitlisted(
    course_id: str, *, seats: int | None, check_first: bool = False
) -> int:
    """Promote up to `seats` waitlisted enrollments (None: while there is room), first in
    first out; returns how many. Each promotion is a transition like a re-enrollment: the
    head of the waitlist becomes active under a fresh operation (a conditional write that
    one promoter wins), then that operation takes a seat through the guarded course update.
    A promotion that finds the course full after all puts the enrollment back, same key.
    `check_first` reads the course first and promotes only if a seat is free."""
    if check_first:
        state = await repository.course_state(course_id)
        if state is None or state.admission.capacity is None:
            return 0
        if state.enrollers >= state.admission.capacity:
            return 0
    promoted = 0
    losses = 0
    heads: list[Enrollment] = []
    while (seats is None or promoted < seats) and losses < MAX_PROMOTION_LOSSES:
        if not heads:
            heads = await repository.enrollment_waitlist_heads(course_id, limit=PROMOTION_BATCH)
            if not heads:
                break
        head = heads.pop(0)
        active = await repository.enrollment_transition(
            head,
            {"status": ACTIVE, "op": membership.new_op(bulk=False), "waitlist_key": None},
        )
        if active is None:
            # Another promoter (or a withdrawal) took it first: each loss is someone else's
            # progress, so try the next in line.
            losses += 1
            continue
        admission = await repository.course_admission(course_id, fresh=True)
        capacity = None if admission is None else admission.capacity
        promotion = replace(active, source="admin")  # waitlisted: no window applies
        if await _apply_join(promotion, repository.now(), capacity):
            promoted += 1
            continue
        if not await repository.course_retire_op(course_id, active.op):
            promoted += 1  # counted in by a concurrent settle of the same enrollment
            continue
        await repository.enrollment_transition(
            active, {"status": WAITLISTED, "op": None, "waitlist_key": head.waitlist_key}
        )
        break  # full after all
    return promoted


async def _rejoin(enrollment: Enrollment, *, source: str, assigned_by: int | None) -> Enrollment:
    """A withdrawn enrollment enrolls again: the same enrollment back to active (or
    waitlisted), under a fresh operation."""
    for _ in range(MAX_ROUNDS):
        active = await repository.enrollment_transition(
            enrollment,
            {
                "status": ACTIVE,
                "op": membership.new_op(bulk=False),
                "withdrawn_at": None,
                "source": source,
                "assigned_by": assigned_by,
            },
        )
        if active is not None:
            return await _join(active, repository.now())
        current = await repository.enrollment_get(enrollment.id)
        if current is None:
            raise NotFound(ENROLLMENT_NOT_FOUND)
        enrollment = await _settle(current)
        if enrollment.status != WITHDRAWN:
            return enrollment
    raise ServiceUnavailable("The enrollment kept changing; retry the request.")


async def enrollment_withdraw(*, course_id: str, user_id: int, by_admin: bool) -> Enrollment:
    """Withdraw the user's enrollment (docs/api.md, "Enrollment lifecycle").

    A member leaves under a fresh operation: the conditional write that sets `withdrawn`
    records it, the guarded course update counts the member out once, and the freed seat
    goes to the head of the waitlist. A waitlisted enrollment just leaves the waitlist.
    """
    enrollment = await repository.enrollment_find(course_id, user_id)
    if enrollment is None:
        raise NotFound(ENROLLMENT_NOT_FOUND)
    for _ in range(MAX_ROUNDS):
        if not by_admin and enrollment.source == "admin" and enrollment.status != WITHDRAWN:
            raise AssignedEnrollment()
        enrollment = await _settle(enrollment)
        if enrollment.status == WITHDRAWN:
            return enrollment
        if enrollment.status == COMPLETED:
            raise AlreadyCompleted()
        moment = repository.now()
        if enrollment.status == WAITLISTED:
            changes = {"status": WITHDRAWN, "withdrawn_at": moment, "waitlist_key": None}
        else:
            leave = membership.new_op(bulk=False)
            changes = {"status": WITHDRAWN, "withdrawn_at": moment, "op": leave}
        withdrawn = await repository.enrollment_transition(enrollment, changes)
        if withdrawn is not None:
            if withdrawn.op is not None:
                await _apply_leave(course_id, withdrawn.op, user_id)
            return withdrawn
        enrollment = await repository.enrollment_find(course_id, user_id)
        if enrollment is None:
            raise NotFound(ENROLLMENT_NOT_FOUND)
    raise ServiceUnavailable("The enrollment kept changing; retry the request.")


async def enrollment_complete(*, course_id: str, user_id: int) -> Enrollment:
    """Mark an active enrollment completed (admin). Completion changes no membership, so
    it is not an operation: one conditional write."""
    enrollment = await repository.enrollment_find(course_id, user_id)
    if enrollment is None:
        raise NotFound(ENROLLMENT_NOT_FOUND)
    for _ in range(MAX_ROUNDS):
        enrollment = await _settle(enrollment)
        if enrollment.status == COMPLETED:
            return enrollment
        if enrollment.status != ACTIVE:
            raise NotActive()
        completed = await repository.enrollment_transition(
            enrollment, {"status": COMPLETED, "completed_at": repository.now()}
        )
        if completed is not None:
            return completed
        enrollment = await repository.enrollment_find(course_id, user_id)
        if enrollment is None:
            raise NotFound(ENROLLMENT_NOT_FOUND)
    raise ServiceUnavailable("The enrollment kept changing; retry the request.")


# Bulk operations adopt at most this many retired operations' enrollments per request, and
# give up after this many rounds of losing their own operation to a concurrent adopter.
MAX_ADOPTED_OPS = 16
MAX_ROUNDS = 5
# Promotions read the head of the waitlist this many at a time, and give up after losing
# this many enrollments to concurrent promoters (each loss is another promoter's success).
PROMOTION_BATCH = 32
MAX_PROMOTION_LOSSES = 256


@dataclass
class BulkSeating:
    """The seat guard of a bulk assignment's counting write (docs/api.md, "Capacity").

    `seats` is the capacity the request believes the course has (None: an admin overrode
    capacity, so no guard). `queue` holds this request's admitted users in request order:
    when the guard finds fewer seats than believed, the last of them give theirs back and
    join the waitlist under their `keys` entry (reserved in request order, before the keys
    of the users waitlisted at once; fresh keys for users without one). `demoted` collects
    the users who did.
    """

    seats: repository.Seats | None
    queue: list[int] = field(default_factory=list)
    keys: dict[int, int] = field(default_factory=dict)
    demoted: set[int] = field(default_factory=set)


async def membership_apply_bulk(
    course_id: str,
    op: int,
    inserted: list[EnrolledUser],
    found_ops: set[int],
    seating: BulkSeating | None = None,
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

    With `seating`, the course update also takes the seats (enrollers + count <= capacity,
    capacity unchanged). When that guard misses (seats taken concurrently, a capacity
    change), the course is read again and the members beyond the free seats move to the
    waitlist (one bulk write) before the next round: a bounded number of rounds.
    """
    adopted = 0
    stale = [o for o in found_ops if membership.is_bulk(o) and o != op][:MAX_ADOPTED_OPS]
    if stale:
        retired = await _retired_among(course_id, stale)
        if retired:
            adopted = await repository.enrollment_restamp(course_id, retired, op)
    count = len(inserted) + adopted
    reread = adopted > 0
    for _ in range(MAX_ROUNDS):
        if count == 0:
            enrollers = await repository.course_enrollers(course_id)
        else:
            if reread:
                members = await repository.enrollment_members_of_op(
                    course_id, op, limit=settings.COURSE_EMBEDDED_MEMBERS
                )
            else:
                members = inserted[-settings.COURSE_EMBEDDED_MEMBERS :]
            enrollers = await repository.course_apply_op(
                course_id,
                op,
                count=count,
                members=members,
                seats=None if seating is None else seating.seats,
            )
        if enrollers is not None:
            return enrollers
        state = await repository.course_state(course_id)
        if state is None:
            raise NotFound(COURSE_NOT_FOUND)
        if seating is not None and seating.seats is not None and not op_settled(op, state.applied):
            # The seat guard missed: take the course as it now is, and give back the seats
            # it no longer has.
            capacity = state.admission.capacity
            seating.seats = repository.Seats(capacity)
            if capacity is not None and count > capacity - state.enrollers:
                count -= await _demote(
                    course_id, op, seating, count - max(0, capacity - state.enrollers)
                )
                reread = True
            continue
        # Our operation was retired by a concurrent adopter (or fell out of the ledger's
        # window while we inserted): nobody else applies bulk operations, so what is still
        # under it is uncounted. Move it to a fresh operation and count that.
        fresh = membership.new_op(bulk=True)
        count = adopted = await repository.enrollment_restamp(course_id, [op], fresh)
        reread = True
        op = fresh
    raise ServiceUnavailable("Could not update the course counters; retry the request.")


async def _demote(course_id: str, op: int, seating: BulkSeating, excess: int) -> int:
    """Move the last `excess` members of `op` (this request's, last requested first; then
    those it adopted, newest first) to the waitlist; returns how many moved."""
    victims: list[int] = []
    while seating.queue and len(victims) < excess:
        victims.append(seating.queue.pop())
    victims.reverse()  # request order, for their keys
    moved = await _demote_users(course_id, op, seating, victims)
    if len(victims) < excess:
        # Adopted from an earlier attempt: no key of ours, so behind everyone waiting.
        rest = await repository.enrollment_members_of_op(course_id, op, limit=excess - len(victims))
        moved += await _demote_users(course_id, op, seating, [m.user_id for m in rest])
    return moved


async def _demote_users(course_id: str, op: int, seating: BulkSeating, user_ids: list[int]) -> int:
    if not user_ids:
        return 0
    fresh = iter(membership.new_ops(sum(u not in seating.keys for u in user_ids), bulk=False))
    keys = [(u, seating.keys[u] if u in seating.keys else next(fresh)) for u in user_ids]
    moved = await repository.enrollment_demote(course_id, op, keys)
    if moved == len(user_ids):
        seating.demoted.update(user_ids)
    else:  # some were adopted away by a concurrent retry meanwhile: theirs to count
        found = await repository.enrollment_existing_among(course_id, user_ids)
        seating.demoted.update(u for u in user_ids if u in found and found[u].status == WAITLISTED)
    return moved


async def leave_settle(course_id: str, op: int, user_id: int) -> None:
    """Count out a withdrawal whose request died before its course update (before the
    withdrawn enrollment comes back through an assignment)."""
    await _apply_leave(course_id, op, user_id)


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
