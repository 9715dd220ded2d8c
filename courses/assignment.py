"""Admin assignment: one user, or thousands in a constant number of MongoDB writes."""

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from accounts import selectors as accounts
from common.errors import InvalidInput, NotFound
from courses import membership, repository, services
from courses.documents import Admission, EnrolledUser, Enrollment

logger = logging.getLogger("courses.audit")

# SQL `id IN (...)` and MongoDB `$in` reads go out in chunks of this many ids.
READ_CHUNK = 1000

ENROLLED = "enrolled"
ALREADY_ENROLLED = "already_enrolled"
NOT_FOUND = "not_found"
INACTIVE = "inactive"


@dataclass
class AssignmentReport:
    course_id: str
    requested: int
    results: list[tuple[int, str]]
    enrollers: int
    summary: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = {"requested": self.requested}
        for key in (ENROLLED, ALREADY_ENROLLED, NOT_FOUND, INACTIVE):
            self.summary[key] = 0
        for _, status in self.results:
            self.summary[status] += 1
        self.summary["duplicates_in_request"] = self.requested - len(self.results)


async def assignment_create(
    *, course_id: str, user_id: int, admin_id: int
) -> tuple[Enrollment, bool]:
    admission, rows = await asyncio.gather(
        repository.course_admission(course_id, fresh=True), accounts.users_by_ids(ids=[user_id])
    )
    _check_admits(admission)
    if not rows:
        raise InvalidInput(f"User {user_id} does not exist.", field="user_id")
    _, username, is_active = rows[0]
    if not is_active:
        raise InvalidInput(f"User {user_id} is inactive.", field="user_id")
    enrollment, created = await services.enrollment_create_in_course(
        course_id=course_id,
        user_id=user_id,
        username=username,
        source="admin",
        assigned_by=admin_id,
    )
    _audit(admin_id, course_id, {ENROLLED if created else ALREADY_ENROLLED: 1})
    return enrollment, created


async def assignment_bulk_create(
    *,
    course_id: str,
    user_ids: list[int],
    admin_id: int,
    op: int | None = None,
    own_ops: Collection[int] = (),
) -> AssignmentReport:
    """Assign many users; the MongoDB writes are one bulk insert and one course update.

    Users who win a race against this request (a concurrent self-enroll of the same user)
    come back as duplicate-key errors of the bulk insert and are reported as
    `already_enrolled`, never as failures. Users enrolled by an earlier assignment that
    failed before counting them are `already_enrolled` too, and counted by this one
    (services.membership_apply_bulk): a retry after a crash converges.

    `op` is this call's operation id when the caller recorded it beforehand; `own_ops` are
    the operations of earlier attempts of the same work (an assignment job's chunk run
    again after a crash, courses/jobs.py): their users are reported `enrolled`, since
    this work enrolled them, and counted once like any other failed assignment's.
    """
    distinct = list(dict.fromkeys(user_ids))
    chunks = [distinct[i : i + READ_CHUNK] for i in range(0, len(distinct), READ_CHUNK)]
    admission, user_chunks, enrolled_chunks = await asyncio.gather(
        # Fresh, not the known-course memory: this request may write thousands of
        # enrollments, and the query runs beside the others at no extra latency.
        repository.course_admission(course_id, fresh=True),
        asyncio.gather(*(accounts.users_by_ids(ids=chunk) for chunk in chunks)),
        asyncio.gather(*(repository.enrollment_ops_among(course_id, c) for c in chunks)),
    )
    _check_admits(admission)
    users = {uid: (username, active) for rows in user_chunks for uid, username, active in rows}
    enrolled = {uid: op for ops in enrolled_chunks for uid, op in ops.items()}

    if op is None:
        op = membership.new_op(bulk=True)
    enrolled_at = repository.now()
    to_insert = [
        Enrollment(
            id=repository.new_id(),
            user_id=uid,
            username=users[uid][0],
            course_id=course_id,
            status="active",
            enrolled_at=enrolled_at,
            source="admin",
            assigned_by=admin_id,
            op=op,
        )
        for uid in distinct
        if uid in users and users[uid][1] and uid not in enrolled
    ]
    lost_races = await repository.enrollment_insert_many(to_insert)
    inserted = [
        EnrolledUser(e.user_id, e.username) for e in to_insert if e.user_id not in lost_races
    ]
    found_ops = {o for o in enrolled.values() if o is not None}
    try:
        enrollers = await services.membership_apply_bulk(course_id, op, inserted, found_ops)
    except NotFound:
        # The course vanished between the existence check and the course update (it is
        # the write that proves the course is there): take back what this call inserted,
        # so nothing stays written for a course that does not exist. A crash right here
        # leaves them behind: `reconcile_enrollments --orphans` finds them.
        await repository.enrollment_delete_many(
            [e.id for e in to_insert if e.user_id not in lost_races]
        )
        raise

    inserted_ids = {u.user_id for u in inserted}
    if own_ops:
        inserted_ids |= {uid for uid, o in enrolled.items() if o in own_ops}
    results = [(uid, _status(uid, users, inserted_ids)) for uid in distinct]
    report = AssignmentReport(
        course_id=course_id, requested=len(user_ids), results=results, enrollers=enrollers
    )
    _audit(admin_id, course_id, report.summary)
    return report


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


def _status(uid: int, users: dict[int, tuple[str, bool]], inserted: set[int]) -> str:
    if uid not in users:
        return NOT_FOUND
    if not users[uid][1]:
        return INACTIVE
    return ENROLLED if uid in inserted else ALREADY_ENROLLED


def _audit(admin_id: int, course_id: str, counts: dict[str, int]) -> None:
    logger.info(
        "admin assignment",
        extra={"audit": "assignment", "admin_id": admin_id, "course_id": course_id, **counts},
    )
