"""Course and enrollment reads."""

import asyncio
from dataclasses import dataclass

from common.errors import NotFound
from courses import repository
from courses.documents import Course, Enrollment
from courses.services import COURSE_NOT_FOUND


@dataclass(frozen=True)
class EnrollmentWithTitle:
    enrollment: Enrollment
    course_title: str | None


async def course_list(*, limit: int, offset: int) -> tuple[int, list[Course]]:
    return await asyncio.gather(
        repository.course_count(), repository.course_page(limit=limit, offset=offset)
    )


async def course_get(*, course_id: str, with_enrolled_users: bool) -> Course:
    course = await repository.course_get(course_id, with_enrolled_users=with_enrolled_users)
    if course is None:
        raise NotFound(COURSE_NOT_FOUND)
    return course


async def enrollment_list_for_user(
    *, user_id: int, limit: int, offset: int
) -> tuple[int, list[EnrollmentWithTitle]]:
    count, page = await asyncio.gather(
        repository.enrollment_count_for_user(user_id),
        repository.enrollment_page_for_user(user_id, limit=limit, offset=offset),
    )
    titles = await repository.course_titles(e.course_id for e in page)
    return count, [EnrollmentWithTitle(e, titles.get(e.course_id)) for e in page]
