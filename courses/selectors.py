"""Course and enrollment reads."""

import asyncio
from dataclasses import dataclass

from common.errors import NotFound
from courses import repository
from courses.documents import COURSE_OPEN, Course, Enrollment
from courses.services import COURSE_NOT_FOUND


@dataclass(frozen=True)
class EnrollmentWithTitle:
    enrollment: Enrollment
    course_title: str | None


async def course_list(
    *,
    limit: int,
    offset: int,
    status: str = COURSE_OPEN,
    search: str = "",
    ordering: str = "-created_at",
) -> tuple[int, list[Course]]:
    """(count matching the filter, one page). `status` is "open" (the default: archived
    courses hidden), "archived" or "all"; every word of `search` must start a title word."""
    words = repository.title_words(search)
    return await asyncio.gather(
        repository.course_count(status=status, words=words),
        repository.course_page(
            limit=limit, offset=offset, status=status, words=words, ordering=ordering
        ),
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


async def enrollment_get(*, course_id: str, user_id: int) -> Enrollment | None:
    """The user's enrollment in the course, or None."""
    return await repository.enrollment_find(course_id, user_id)
