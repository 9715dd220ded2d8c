"""Repair of the course counters from the enrollments collection (the source of truth).

The enroll path writes the enrollment and then the course in two steps with no
transaction between them (standalone servers have none); a failure between the two
leaves `enrollers`/`enrolled_users` short. This recomputes them. Each course is replaced
with a compare-and-set on the values it read, and re-read if a concurrent enrollment
changed it meanwhile, so running it on a live system does not lose enrollments.
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
