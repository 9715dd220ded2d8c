"""Repair of the course counters from the enrollments collection (the source of truth).

The enroll path writes the enrollment and then the course in two steps with no
transaction between them (standalone servers have none); a failure between the two
leaves `enrollers`/`enrolled_users` short until a retry of the same request counts it in
(courses.membership). This recomputes them, whatever was left. Each course is replaced
with a compare-and-set on the values it read, and re-read if a concurrent enrollment
changed it meanwhile, so running it on a live system does not lose enrollments.

Two faults make the enrollments themselves wrong, and are repaired first, on request:
duplicates of a (course, user) pair, written while the unique index was missing (a
MongoDB that came back without it), and orphans, enrollments of a course that no longer
exists (deleted behind the service, or lost by a restore).
"""

import time
from collections import Counter
from dataclasses import dataclass

from django.conf import settings

from common.errors import NotFound
from courses import membership, repository, services
from courses.documents import WITHDRAWN

MAX_ATTEMPTS = 5
# Operations younger than this may belong to a request still running (docs/scaling.md).
GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class CourseFix:
    course_id: str
    enrollers_before: int
    enrollers_after: int
    added: list[int]
    removed: list[int]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed) or self.enrollers_before != self.enrollers_after


async def course_reconcile(
    *, course_id: str, dry_run: bool = False, grace_seconds: float = GRACE_SECONDS
) -> CourseFix:
    """Make the course's counters match its enrollments.

    `enrollers` becomes the number of members, `enrolled_users` the COURSE_EMBEDDED_MEMBERS
    most recent of them (by operation, then insertion), and each operation counted here is
    recorded in the ledger, so that a late retry of it cannot count it again.

    Operations younger than `grace_seconds` that the ledger does not record are left out:
    their request may still be running and will count them itself (a retry or the next
    run of this command handles them if it died). Enrollments left under a bulk operation
    that was retired (its request died between insert and adoption) are counted here and
    detached from operations, so that no assignment adopts them again.
    """
    horizon_us = time.time_ns() // 1000 - int(grace_seconds * 1_000_000)

    def settled(op: int) -> bool:
        return membership.created_at_us(op) <= horizon_us

    for _ in range(MAX_ATTEMPTS):
        course = await repository.course_counters(course_id)
        if course is None:
            raise NotFound(f"Course {course_id} not found.")
        recorded = set(course.applied)
        retired_all = [e - 1 for e in recorded if e & 1 and settled(e - 1)]
        # A retired bulk operation's enrollments are adopted (counted); a retired single
        # join is one that found the course full: its enrollment belongs on the waitlist.
        retired = [op for op in retired_all if membership.is_bulk(op)]
        if not dry_run:
            if retired:
                await repository.enrollment_restamp(course_id, retired, None)
            singles = [op for op in retired_all if not membership.is_bulk(op)]
            if singles:
                await repository.enrollment_waitlist_retired(course_id, singles)
            await repository.enrollment_waitlist_keys_fill(course_id)
        groups = await repository.enrollment_op_counts(course_id)
        full = len(course.applied) >= membership.APPLIED_OPS
        floor = course.applied[0] if full else None
        counted_ops, pending_ops, count = [], [], 0
        leaves = await repository.enrollment_op_counts(course_id, (WITHDRAWN,))
        for op, n in leaves.items():
            # A withdrawal is counted out once its operation is applied; a young one that
            # is not may still be on its way (its member still counted), an old one died
            # between its two writes: count it out here and record it.
            if op is None or op in recorded or (floor is not None and op < floor):
                continue
            if settled(op):
                counted_ops.append(op)
            else:
                count += n
        for op, n in groups.items():
            if op is None or op in recorded or op in retired:
                count += n
            elif floor is not None and op < floor:
                count += n  # out of the ledger's window: presumed applied
            elif settled(op) and membership.retired(op) not in recorded:
                count += n  # a request died between its two writes
                counted_ops.append(op)
            else:
                pending_ops.append(op)  # in flight, or retired moments ago
        recent = await repository.enrollment_recent_members(
            course_id, limit=settings.COURSE_EMBEDDED_MEMBERS, excluding_ops=pending_ops
        )
        listed = Counter(course.enrolled_user_ids)
        recent_ids = Counter(u.user_id for u in recent)
        unlisted_ok = await repository.enrollment_ops_among(
            course_id, [uid for uid in listed if uid not in recent_ids]
        )
        strays = [uid for uid in listed if uid not in recent_ids and uid not in unlisted_ok]
        fix = CourseFix(
            course_id=course_id,
            enrollers_before=course.enrollers,
            enrollers_after=count,
            added=sorted((recent_ids - listed).elements()),
            removed=sorted((listed - recent_ids).elements()),  # strays, duplicates, oldest
        )
        in_step = count == course.enrollers and not strays and _holds_recent(listed, recent_ids)
        if dry_run or (in_step and not counted_ops):
            if not dry_run:
                await services.promote_waitlisted(course_id, seats=None, check_first=True)
            return fix if not in_step else _unchanged(fix)
        if await repository.course_replace_membership(
            course_id,
            expected=course,
            enrollers=count,
            members=recent if not in_step else None,
            applied=sorted(recorded | {o for o in counted_ops if o not in retired}),
        ):
            # Seats the repair freed go to the waitlist (FIFO), as a withdrawal's would.
            await services.promote_waitlisted(course_id, seats=None, check_first=True)
            return fix if not in_step else _unchanged(fix)
    raise RuntimeError(f"Course {course_id} kept changing; run reconcile again.")


def _holds_recent(listed: Counter, recent: Counter) -> bool:
    """The embedded list is right if it holds distinct members, as many as it should:
    which of the concurrently counted members are "most recent" is the order in which
    their course updates applied, which only the list itself records."""
    return max(listed.values(), default=1) == 1 and sum(listed.values()) == sum(recent.values())


def _unchanged(fix: CourseFix) -> CourseFix:
    return CourseFix(fix.course_id, fix.enrollers_before, fix.enrollers_after, [], [])


async def courses_reconcile(
    *, course_id: str | None = None, dry_run: bool = False, grace_seconds: float = GRACE_SECONDS
) -> list[CourseFix]:
    ids = [course_id] if course_id else await repository.course_all_ids()
    return [
        await course_reconcile(course_id=cid, dry_run=dry_run, grace_seconds=grace_seconds)
        for cid in ids
    ]


@dataclass(frozen=True)
class Duplicates:
    """(course_id, user_id) -> that pair's enrollment ids, oldest first; all but the first
    are surplus."""

    pairs: dict[tuple[str, int], list[str]]
    removed: int = 0

    @property
    def surplus(self) -> list[str]:
        return [eid for ids in self.pairs.values() for eid in ids[1:]]

    def example(self) -> str:
        (course_id, user_id), ids = next(iter(self.pairs.items()))
        return f"course {course_id} user {user_id}: {len(ids)} enrollments"


async def enrollments_duplicates() -> Duplicates:
    return Duplicates(pairs=await repository.enrollment_duplicates())


async def enrollments_dedupe(*, dry_run: bool = False) -> Duplicates:
    """Delete all but the oldest enrollment of each duplicated pair (by enrolled_at, then
    _id: deterministic), then create the unique index so no new duplicate can appear.
    Run the course reconcile afterwards: the counters still count the duplicates."""
    found = first = await enrollments_duplicates()
    if dry_run:
        return found
    removed = 0
    for _ in range(MAX_ATTEMPTS):
        removed += await repository.enrollment_delete_many(found.surplus)
        if await repository.enrollment_index_ensure():
            return Duplicates(pairs=first.pairs, removed=removed)
        # Written meanwhile by a process that still believed the index existed.
        found = await enrollments_duplicates()
    raise RuntimeError("Duplicates kept appearing; stop the writers and run --dedupe again.")


@dataclass(frozen=True)
class Orphans:
    """Enrollments of courses that do not exist: course id -> how many."""

    courses: dict[str, int]
    removed: int = 0

    @property
    def enrollments(self) -> int:
        return sum(self.courses.values())


async def enrollments_orphans(*, remove: bool = False) -> Orphans:
    """Find (and with `remove`, delete) enrollments whose course does not exist.

    Course ids come from the enrollments first, then are looked up: a course is always
    created before any enrollment names it, so one missing at the second read is gone."""
    named = await repository.enrollment_course_ids()
    missing = named - await repository.course_ids_existing(named)
    counts = await repository.enrollment_count_by_course(missing)
    removed = await repository.enrollment_delete_for_courses(missing) if remove else 0
    return Orphans(courses=dict(sorted(counts.items())), removed=removed)
