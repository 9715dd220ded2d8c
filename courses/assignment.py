"""Admin assignment: one user, or thousands in a constant number of MongoDB writes."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from accounts import selectors as accounts
from accounts.models import username_key
from common.errors import InvalidInput, NotFound
from courses import assignment_repository, membership, repository, services
from courses.documents import (
    ACTIVE,
    WAITLISTED,
    WITHDRAWN,
    Admission,
    CourseState,
    EnrolledUser,
    Enrollment,
    ExistingEnrollment,
    StoredAssignment,
)

logger = logging.getLogger("courses.audit")

# SQL `id IN (...)` and MongoDB `$in` reads go out in chunks of this many ids.
READ_CHUNK = 1000

ENROLLED = "enrolled"
ALREADY_ENROLLED = "already_enrolled"
NOT_FOUND = "not_found"
INACTIVE = "inactive"
ASSIGNMENT_NOT_FOUND = "Assignment not found."

STATUSES = (ENROLLED, ALREADY_ENROLLED, WAITLISTED, NOT_FOUND, INACTIVE)

# How users are named; a JSON body uses one kind, a CSV may mix columns (one per row).
USER_ID = "user_id"
USERNAME = "username"
EMAIL = "email"
IDENTIFIER_KINDS = (USER_ID, USERNAME, EMAIL)


@dataclass(frozen=True)
class Requested:
    """One requested user: the identifier as sent, and the deadline asked for it."""

    kind: str
    value: int | str
    due_at: datetime | None = None


@dataclass
class AssignmentReport:
    """What assign-multiple answers (and stores). `results` are rendered: one dict per
    distinct user (or unresolved identifier), in request order."""

    course_id: str
    requested: int
    results: list[dict[str, Any]]
    enrollers: int
    dry_run: bool = False
    id: str | None = None
    summary: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = {"requested": self.requested, **dict.fromkeys(STATUSES, 0)}
        for result in self.results:
            self.summary[result["status"]] += 1
        self.summary["duplicates_in_request"] = self.requested - len(self.results)


async def assignment_create(
    *,
    course_id: str,
    user_id: int,
    admin_id: int,
    due_at: datetime | None = None,
    override_capacity: bool = False,
) -> tuple[Enrollment, bool]:
    """Assign one user. A repeat with a `due_at` moves an active (or waitlisted)
    enrollment's deadline to it (docs/api.md, "Due dates")."""
    admission, rows = await asyncio.gather(
        repository.course_admission(course_id, fresh=True), accounts.users_by_ids(ids=[user_id])
    )
    _check_admits(admission)
    if not rows:
        raise InvalidInput(f"User {user_id} does not exist.", field="user_id")
    _, username, is_active = rows[0]
    if not is_active:
        raise InvalidInput(f"User {user_id} is inactive.", field="user_id")
    if override_capacity:
        # The bulk path is the one that seats beyond the capacity (no seat guard in its
        # counting write): one user is a bulk of one. It writes the audit line.
        report = await assignment_bulk_create(
            course_id=course_id,
            items=[Requested(USER_ID, user_id, due_at)],
            admin_id=admin_id,
            due_at=due_at,
            override_capacity=True,
            with_identifiers=False,
            store=False,
        )
        enrollment = await repository.enrollment_find(course_id, user_id)
        if enrollment is None:  # taken back: the course vanished meanwhile
            raise NotFound(services.COURSE_NOT_FOUND)
        return enrollment, report.results[0]["status"] == ENROLLED
    # A full course waitlists the user (services: the seat guard of the counting write).
    enrollment, created = await services.enrollment_create_in_course(
        course_id=course_id,
        user_id=user_id,
        username=username,
        source="admin",
        assigned_by=admin_id,
        due_at=due_at,
    )
    if not created and due_at is not None and enrollment.due_at != due_at:
        moved = await repository.enrollment_set_due_at_one(course_id, user_id, due_at)
        enrollment = moved or enrollment
    _audit(admin_id, course_id, {ENROLLED if created else ALREADY_ENROLLED: 1})
    return enrollment, created


@dataclass
class _Resolved:
    """The SQL and MongoDB reads of one chunk of identifiers."""

    keys: dict[Any, int] = field(default_factory=dict)  # identifier key -> user id
    users: dict[int, tuple[str, bool]] = field(default_factory=dict)  # id -> (username, active)
    existing: dict[int, ExistingEnrollment] = field(default_factory=dict)


def identifier_key(kind: str, value: int | str) -> int | str:
    """The form in which two identifiers of one kind name the same user (as login and
    registration compare usernames and emails)."""
    if kind == USERNAME:
        return username_key(value)
    if kind == EMAIL:
        return accounts.email_key(value)
    return int(value)  # a CSV cell: validated digits


async def _resolve_chunk(course_id: str, kind: str, keys: list) -> _Resolved:
    """Resolve one chunk in SQL and read its users' enrollments. By id both go out at once;
    by username or email the MongoDB read waits for the ids, but runs while the other
    chunks' SQL queries do."""
    resolved = _Resolved()
    if kind == USER_ID:
        rows, resolved.existing = await asyncio.gather(
            accounts.users_by_ids(ids=keys), repository.enrollment_existing_among(course_id, keys)
        )
        for uid, username, active in rows:
            resolved.keys[uid] = uid
            resolved.users[uid] = (username, active)
        return resolved
    lookup = accounts.users_by_usernames if kind == USERNAME else accounts.users_by_emails
    rows = await lookup(**{f"{kind}s": keys})
    for key, uid, username, active in rows:
        resolved.keys[key] = uid
        resolved.users[uid] = (username, active)
    if resolved.users:
        resolved.existing = await repository.enrollment_existing_among(
            course_id, list(resolved.users)
        )
    return resolved


@dataclass(frozen=True)
class _Entry:
    """One distinct requested user (or unresolved identifier), first occurrence wins."""

    requested: Requested
    user_id: int | None


def entry_identity(entry: _Entry) -> str:
    """Who an entry names, as a string: the resolved user, else the identifier's key
    (an assignment job compares these across its chunks)."""
    if entry.user_id is not None:
        return f"u{entry.user_id}"
    return f"{entry.requested.kind}:{identifier_key(entry.requested.kind, entry.requested.value)}"


def _distinct(items: list[Requested], resolved: _Resolved) -> list[_Entry]:
    """Duplicates are counted after resolution: an id and the same user's email are one."""
    seen: set = set()
    entries = []
    for item in items:
        key = identifier_key(item.kind, item.value)
        uid = (
            resolved.keys.get(key)
            if item.kind != USER_ID
            else (key if key in resolved.users else None)
        )
        identity = ("user", uid) if uid is not None else (item.kind, key)
        if identity in seen:
            continue
        seen.add(identity)
        entries.append(_Entry(item, uid))
    return entries


@dataclass
class _Split:
    """Who this assignment seats and who waits, in request order (docs/api.md, "Capacity")."""

    admitted: list[_Entry]
    waitlisted: list[_Entry]
    seats: repository.Seats | None  # the counting write's seat guard; None: overridden
    settle_leaves: list[tuple[int, int]]  # (user id, op) of withdrawals still uncounted
    adoptable: int  # members of earlier attempts this one counts in


def _seat(
    candidates: list[_Entry],
    state: CourseState,
    existing: dict[int, ExistingEnrollment],
    *,
    override_capacity: bool,
    seats_taken: int = 0,
) -> _Split:
    """Admit at most the free seats, first requested first; the rest are waitlisted.

    Free seats are the course's as read, less the members of earlier attempts this one
    will adopt (their bulk operation is unapplied: they take seats when counted), plus the
    withdrawals among the candidates that were never counted out (settled first), less
    `seats_taken` (the seats earlier chunks of a dry-run job would have taken). A dry run
    and the assignment make the same split from the same state.
    """
    ledger = state.applied
    leaves = [
        (e.user_id, existing[e.user_id].op)
        for e in candidates
        if e.user_id in existing
        and existing[e.user_id].op is not None
        and not services.op_settled(existing[e.user_id].op, ledger)
    ]
    adoptable = sum(
        1
        for x in existing.values()
        if x.status == ACTIVE
        and x.op is not None
        and membership.is_bulk(x.op)
        and (membership.retired(x.op) in ledger or not services.op_settled(x.op, ledger))
    )
    capacity = state.admission.capacity
    if override_capacity:
        return _Split(candidates, [], None, leaves, adoptable)
    if capacity is None:
        return _Split(candidates, [], repository.Seats(None), leaves, adoptable)
    free = max(0, capacity - state.enrollers - adoptable + len(leaves) - seats_taken)
    seats = repository.Seats(capacity)
    return _Split(candidates[:free], candidates[free:], seats, leaves, adoptable)


async def assignment_bulk_create(
    *,
    course_id: str,
    items: list[Requested],
    admin_id: int,
    due_at: datetime | None = None,
    override_capacity: bool = False,
    dry_run: bool = False,
    assignment_id: str | None = None,
    with_identifiers: bool = True,
    op: int | None = None,
    own_ops: Collection[int] = (),
    store: bool = True,
    claim: Callable[[list[str]], Awaitable[set[str]]] | None = None,
    seats_taken: int = 0,
) -> AssignmentReport:
    """Assign many users; the MongoDB writes are one bulk insert, one course update, at
    most one bulk deadline update and the stored report (two writes), whatever the size
    (+ one bulk update bringing withdrawn users back, and, when the seat guard finds
    seats taken meanwhile, a bounded number of rounds of one bulk update each).

    A capped course seats the first requested up to its free seats and waitlists the
    rest in request order, unless `override_capacity` (`_seat`, services.BulkSeating).

    `items` name users by id, username or email, each with its own deadline (the body's
    `due_at` is the one stored with the report). Users who win a race against this request
    (a concurrent self-enroll of the same user) come back as duplicate-key errors of the
    bulk insert and are reported as `already_enrolled`, never as failures. Users enrolled
    by an earlier assignment that failed before counting them are `already_enrolled` too,
    and counted by this one (services.membership_apply_bulk): a retry after a crash
    converges.

    `dry_run` reads the same state and answers the report the assignment would give now,
    writing nothing (no enrollment, counter, stored report or audit line).
    `assignment_id` is the stored report's id (an Idempotency-Key retry passes the id of
    its first attempt, so it cannot store a second report).

    `op` is this call's operation id when the caller recorded it beforehand; `own_ops` are
    the operations of earlier attempts of the same work (an assignment job's chunk run
    again after a crash, courses/jobs.py): their users are reported `enrolled`, since
    this work enrolled them, and counted once like any other failed assignment's. `store`
    False: the caller keeps the results itself (a job's chunk), no stored report.
    `claim` (a job's chunk) is given the distinct entries' identities (`entry_identity`)
    and answers those that another chunk of the job named first: they are left out, and
    so counted under `duplicates_in_request`, as a user named twice in one request is.
    `seats_taken` lowers the free seats (a dry-run job: what its earlier chunks took).
    """
    by_kind: dict[str, list] = {}
    for item in items:
        by_kind.setdefault(item.kind, []).append(identifier_key(item.kind, item.value))
    tasks = []
    for kind, keys in by_kind.items():
        distinct = list(dict.fromkeys(keys))
        for start in range(0, len(distinct), READ_CHUNK):
            tasks.append(_resolve_chunk(course_id, kind, distinct[start : start + READ_CHUNK]))
    keyed = assignment_id is not None and not dry_run
    state, chunks, previous = await asyncio.gather(
        # Fresh, not the known-course memory: this request may write thousands of
        # enrollments, and the query runs beside the others at no extra latency.
        repository.course_state(course_id),
        asyncio.gather(*tasks),
        assignment_repository.assignment_get(assignment_id) if keyed else _none(),
    )
    if previous is not None:
        # A first attempt under this Idempotency-Key did everything, stored its report and
        # died before its answer was kept: that report is the answer.
        return _report_of(previous)
    _check_admits(None if state is None else state.admission)
    resolved = _Resolved()
    for chunk in chunks:
        resolved.keys.update(chunk.keys)
        resolved.users.update(chunk.users)
        resolved.existing.update(chunk.existing)
    users, existing = resolved.users, resolved.existing
    entries = _distinct(items, resolved)
    if claim is not None:
        taken = await claim([entry_identity(e) for e in entries])
        if taken:
            entries = [e for e in entries if entry_identity(e) not in taken]
    # New users, and withdrawn ones: an assignment brings a withdrawn enrollment back, as
    # the single assign does.
    candidates = [
        e
        for e in entries
        if e.user_id is not None
        and users[e.user_id][1]
        and (e.user_id not in existing or existing[e.user_id].status == WITHDRAWN)
    ]
    split = _seat(
        candidates, state, existing, override_capacity=override_capacity, seats_taken=seats_taken
    )
    moving = {
        e.user_id
        for e in entries
        if e.user_id in existing
        and users[e.user_id][1]
        and e.requested.due_at is not None
        and existing[e.user_id].status in repository.DUE_AT_MOVABLE
        and existing[e.user_id].due_at != e.requested.due_at
    }
    if dry_run:
        seated = {e.user_id for e in split.admitted}
        waiting = {e.user_id for e in split.waitlisted}
        enrollers = state.enrollers - len(split.settle_leaves) + split.adoptable + len(seated)
    else:
        outcome = await _write(course_id, split, users, existing, admin_id, op)
        seated, waiting, enrollers = outcome.seated, outcome.waiting, outcome.enrollers
        if own_ops:
            seated |= {uid for uid, x in existing.items() if x.op in own_ops}
        lost = outcome.lost
        moving |= {e.user_id for e in candidates if e.user_id in lost and e.requested.due_at}
        await repository.enrollment_set_due_at(course_id, _by_due_at(entries, moving))
    results = [
        _result(e, users, seated, waiting, moving, with_identifiers=with_identifiers)
        for e in entries
    ]
    report = AssignmentReport(
        course_id=course_id,
        requested=len(items),
        results=results,
        enrollers=enrollers,
        dry_run=dry_run,
    )
    if dry_run:
        return report
    if not store:
        _audit(admin_id, course_id, report.summary)
        return report
    report.id = assignment_id or repository.new_id()
    stored = StoredAssignment(
        id=report.id,
        course_id=course_id,
        assigned_by=admin_id,
        created_at=repository.now(),
        due_at=due_at,
        override_capacity=override_capacity,
        summary=report.summary,
        enrollers=enrollers,
        results=results,
    )
    if not await assignment_repository.assignment_store(stored):
        # Two attempts of one Idempotency-Key ran at once (the first outlived its lease):
        # the first head stored stands.
        previous = await assignment_repository.assignment_get(report.id)
        if previous is not None:
            report = _report_of(previous)
    _audit(admin_id, course_id, report.summary)
    return report


async def _none() -> None:
    return None


@dataclass(frozen=True)
class _Outcome:
    seated: set[int]  # enrolled by this assignment
    waiting: set[int]  # waitlisted by it
    enrollers: int
    lost: set[int]  # new users a concurrent enrollment of theirs beat


async def _write(
    course_id: str,
    split: _Split,
    users: dict[int, tuple[str, bool]],
    existing: dict[int, ExistingEnrollment],
    admin_id: int,
    op: int | None = None,
) -> _Outcome:
    """Insert the new users and bring the withdrawn ones back (active under this
    assignment's operation, or waitlisted), then count the active ones in with the seat
    guard: one bulk insert, one bulk update when some come back, one course update."""
    if split.settle_leaves:
        await asyncio.gather(
            *(services.leave_settle(course_id, op, uid) for uid, op in split.settle_leaves)
        )
    if op is None:
        op = membership.new_op(bulk=True)
    everyone = split.admitted + split.waitlisted  # request order: the seated come first
    keys: dict[int, int] = {}
    if split.waitlisted:
        # FIFO keys in request order, after everyone already waiting; the seated get theirs
        # too, for when the seat guard gives their seats back (services.BulkSeating).
        fresh = membership.new_ops(len(everyone), bulk=False)
        keys = {e.user_id: key for e, key in zip(everyone, fresh, strict=True)}
    seated_ids = {e.user_id for e in split.admitted}
    enrolled_at = repository.now()
    to_insert = []
    revivals = []
    for e in everyone:
        uid, seated = e.user_id, e.user_id in seated_ids
        if uid in existing:
            changes: dict[str, Any] = {
                "source": "admin",
                "assigned_by": admin_id,
                "username": users[uid][0],
            }
            if e.requested.due_at is not None:
                changes["due_at"] = e.requested.due_at
            revivals.append(
                repository.Revival(
                    user_id=uid,
                    seen_op=existing[uid].op,
                    op=op if seated else None,
                    waitlist_key=None if seated else keys[uid],
                    changes=changes,
                )
            )
            continue
        to_insert.append(
            Enrollment(
                id=repository.new_id(),
                user_id=uid,
                username=users[uid][0],
                course_id=course_id,
                status=ACTIVE if seated else WAITLISTED,
                enrolled_at=enrolled_at,
                source="admin",
                assigned_by=admin_id,
                op=op if seated else None,
                due_at=e.requested.due_at,
                waitlist_key=None if seated else keys[uid],
            )
        )
    lost, revived = await asyncio.gather(
        repository.enrollment_insert_many(to_insert), _revive(course_id, op, revivals)
    )
    written = {e.user_id for e in to_insert if e.user_id not in lost} | revived
    admitted = [e.user_id for e in split.admitted if e.user_id in written]
    # Counted in the order of `_id` within the operation: the revived (older) first.
    inserted = [EnrolledUser(u, users[u][0]) for u in admitted if u in revived] + [
        EnrolledUser(u, users[u][0]) for u in admitted if u not in revived
    ]
    seating = None
    if split.seats is not None:
        seating = services.BulkSeating(split.seats, list(admitted), keys)
    found_ops = {x.op for x in existing.values() if x.op is not None}
    try:
        enrollers = await services.membership_apply_bulk(
            course_id, op, inserted, found_ops, seating
        )
    except NotFound:
        # The course vanished between the existence check and the course update (it is
        # the write that proves the course is there): take back what this call inserted,
        # so nothing stays written for a course that does not exist. A crash right here
        # leaves them behind: `reconcile_enrollments --orphans` finds them.
        await repository.enrollment_delete_many([e.id for e in to_insert if e.user_id not in lost])
        raise
    demoted = set() if seating is None else seating.demoted
    waiting = {e.user_id for e in split.waitlisted if e.user_id in written} | demoted
    capacity = None if seating is None else seating.seats.capacity
    queued = waiting or any(x.status == WAITLISTED for x in existing.values())
    if queued and capacity is not None and enrollers < capacity:
        # A seat freed before these waitlisted users were visible to its promotion (or an
        # earlier attempt that died left them waiting).
        await services.promote_waitlisted(course_id, seats=capacity - enrollers)
    return _Outcome(set(admitted) - demoted, waiting, enrollers, lost)


async def _revive(course_id: str, op: int, revivals: list[repository.Revival]) -> set[int]:
    """Bring the withdrawn enrollments back; the user ids this call brought back."""
    ids = [r.user_id for r in revivals]
    if await repository.enrollment_revive(course_id, revivals) == len(revivals):
        return set(ids)
    # Some re-enrolled concurrently on their own: theirs stand.
    found = await repository.enrollment_existing_among(course_id, ids)
    ours = {r.user_id for r in revivals if r.op is not None}
    return {u for u, x in found.items() if (x.op == op if u in ours else x.status == WAITLISTED)}


def _by_due_at(entries: list[_Entry], user_ids: set[int]) -> dict[datetime, list[int]]:
    groups: dict[datetime, list[int]] = {}
    for e in entries:
        if e.user_id in user_ids:
            groups.setdefault(e.requested.due_at, []).append(e.user_id)
    return groups


def _result(
    entry: _Entry,
    users: dict[int, tuple[str, bool]],
    seated: set[int],
    waiting: set[int],
    moving: set[int],
    *,
    with_identifiers: bool,
) -> dict[str, Any]:
    uid = entry.user_id
    if uid is None:
        status = NOT_FOUND
    elif not users[uid][1]:
        status = INACTIVE
    elif uid in waiting:
        status = WAITLISTED
    else:
        status = ENROLLED if uid in seated else ALREADY_ENROLLED
    if with_identifiers:
        result: dict[str, Any] = {"user": entry.requested.value, "user_id": uid, "status": status}
    else:
        result = {"user_id": entry.requested.value, "status": status}
    if status == ALREADY_ENROLLED and entry.requested.due_at is not None:
        result["due_at_updated"] = uid in moving
    return result


def _report_of(stored: StoredAssignment) -> AssignmentReport:
    report = AssignmentReport(
        course_id=stored.course_id,
        requested=stored.summary["requested"],
        results=stored.results or [],
        enrollers=stored.enrollers,
        id=stored.id,
    )
    report.summary = stored.summary
    return report


async def assignment_get(*, assignment_id: str) -> StoredAssignment:
    stored = await assignment_repository.assignment_get(assignment_id)
    if stored is None:
        raise NotFound(ASSIGNMENT_NOT_FOUND)
    return stored


async def assignment_list(
    *, course_id: str | None, limit: int, offset: int
) -> tuple[int, list[StoredAssignment]]:
    """(count, one page) of stored reports, newest first, without their results."""
    return await asyncio.gather(
        assignment_repository.assignment_count(course_id=course_id),
        assignment_repository.assignment_page(course_id=course_id, limit=limit, offset=offset),
    )


def _check_admits(admission: Admission | None) -> None:
    """404 for no course, 409 for an archived one. Read fresh, not from the process's
    cache: an assignment's counting write is unconditional (windows do not bind admins),
    so this read is its check. An archive racing it orders after the assignment."""
    if admission is None:
        raise NotFound(services.COURSE_NOT_FOUND)
    refused = services.refusal_error(admission, repository.now(), self_enrollment=False)
    if refused is not None:
        raise refused


# The same check for callers outside this module (an assignment job checks at submit time).
check_admits = _check_admits


def _audit(admin_id: int, course_id: str, counts: dict[str, int]) -> None:
    logger.info(
        "admin assignment",
        extra={"audit": "assignment", "admin_id": admin_id, "course_id": course_id, **counts},
    )
