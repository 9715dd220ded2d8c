"""Repair of the course counters from the enrollments collection (the source of truth).

The enroll path writes the enrollment and then the course in two steps with no
transaction between them (standalone servers have none); a failure between the two
leaves `enrollers`/`enrolled_users` short. This recomputes them. Each course is replaced
with a compare-and-set on the values it read, and re-read if a concurrent enrollment
changed it meanwhile, so running it on a live system does not lose enrollments.

Two faults make the enrollments themselves wrong, and are repaired first, on request:
duplicates of a (course, user) pair, written while the unique index was missing (a
MongoDB that came back without it), and orphans, enrollments of a course that no longer
exists (deleted behind the service, or lost by a restore).
"""

from collections import Counter
from dataclasses import dataclass

from common.errors import NotFound
from courses import repository

MAX_ATTEMPTS = 5


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


async def course_reconcile(*, course_id: str, dry_run: bool = False) -> CourseFix:
    for _ in range(MAX_ATTEMPTS):
        course = await repository.course_get(course_id, with_enrolled_users=True)
        if course is None:
            raise NotFound(f"Course {course_id} not found.")
        truth = await repository.enrollment_users_for_course(course_id)
        listed = Counter(u.user_id for u in course.enrolled_users or [])
        true_ids = Counter(u.user_id for u in truth)
        fix = CourseFix(
            course_id=course_id,
            enrollers_before=course.enrollers,
            enrollers_after=len(truth),
            added=sorted((true_ids - listed).elements()),
            removed=sorted((listed - true_ids).elements()),  # strays and duplicates
        )
        if dry_run or not fix.changed:
            return fix
        if await repository.course_replace_enrolled(
            course_id,
            expected_enrollers=course.enrollers,
            expected_updated_at=course.updated_at,
            users=truth,
        ):
            return fix
    raise RuntimeError(f"Course {course_id} kept changing; run reconcile again.")


async def courses_reconcile(
    *, course_id: str | None = None, dry_run: bool = False
) -> list[CourseFix]:
    ids = [course_id] if course_id else await repository.course_all_ids()
    return [await course_reconcile(course_id=cid, dry_run=dry_run) for cid in ids]


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
