"""Course and enrollment reads."""

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from common.errors import NotFound
from courses import repository
from courses.documents import (
    COMPLETED,
    COURSE_OPEN,
    ENROLLMENT_STATUSES,
    MEMBER_STATUSES,
    WAITLISTED,
    Course,
    Enrollment,
)
from courses.repository import EnrollmentFilter
from courses.services import COURSE_NOT_FOUND, ENROLLMENT_NOT_FOUND


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


def enrollment_filter(
    *, status: str | None = None, overdue: bool = False, search: str = ""
) -> EnrollmentFilter:
    return EnrollmentFilter(
        status=status, overdue_at=repository.now() if overdue else None, search=search
    )


async def waitlist_positions(enrollments: Iterable[Enrollment]) -> dict[str, int]:
    """The 1-based FIFO position of each waitlisted one among `enrollments`, by id (one
    indexed count each, concurrently; other statuses cost nothing)."""
    waiting = [e for e in enrollments if e.status == WAITLISTED and e.waitlist_key is not None]
    if not waiting:
        return {}
    positions = await asyncio.gather(
        *(repository.enrollment_waitlist_position(e.course_id, e.waitlist_key) for e in waiting)
    )
    return {e.id: p for e, p in zip(waiting, positions, strict=True)}


async def enrollment_position(enrollment: Enrollment) -> int | None:
    if enrollment.status != WAITLISTED or enrollment.waitlist_key is None:
        return None  # the hot path: no query, no task
    return await repository.enrollment_waitlist_position(
        enrollment.course_id, enrollment.waitlist_key
    )


async def waitlist_positions_of(*, course_id: str, user_ids: Sequence[int]) -> dict[int, int]:
    """The waitlist position of each of these users who waits in the course, by user id
    (an assignment report's page: one indexed read and one count per user, concurrently)."""
    found = await asyncio.gather(*(repository.enrollment_find(course_id, u) for u in user_ids))
    enrollments = [e for e in found if e is not None]
    positions = await waitlist_positions(enrollments)
    return {e.user_id: positions[e.id] for e in enrollments if e.id in positions}


# Beyond every waitlist key: the count up to it is the whole queue.
_QUEUE_END = 2**63 - 1


async def waitlist_length(*, course_id: str) -> int:
    """How many wait in the course's queue (a newcomer's position is one more)."""
    return await repository.enrollment_waitlist_position(course_id, _QUEUE_END)


async def enrollment_list_for_user(
    *, user_id: int, limit: int, offset: int, where: EnrollmentFilter = repository.EVERY_ENROLLMENT
) -> tuple[int, list[EnrollmentWithTitle]]:
    count, page = await asyncio.gather(
        repository.enrollment_count_for_user(user_id, where),
        repository.enrollment_page_for_user(user_id, limit=limit, offset=offset, where=where),
    )
    titles = await repository.course_titles(e.course_id for e in page)
    return count, [EnrollmentWithTitle(e, titles.get(e.course_id)) for e in page]


async def enrollment_in_course(*, course_id: str, user_id: int) -> Enrollment | None:
    """The user's enrollment in the course, or None."""
    return await repository.enrollment_find(course_id, user_id)


async def enrollment_get(*, enrollment_id: str, user_id: int, is_admin: bool) -> Enrollment:
    """The caller's own enrollment (an admin: any); another user's is a 404, not a 403,
    so ids cannot be probed."""
    enrollment = await repository.enrollment_get(enrollment_id)
    if enrollment is None or (not is_admin and enrollment.user_id != user_id):
        raise NotFound(ENROLLMENT_NOT_FOUND)
    return enrollment


async def course_enrollment(*, course_id: str, user_id: int) -> Enrollment:
    enrollment, exists = await asyncio.gather(
        repository.enrollment_find(course_id, user_id), repository.course_exists(course_id)
    )
    if not exists:
        raise NotFound(COURSE_NOT_FOUND)
    if enrollment is None:
        raise NotFound(ENROLLMENT_NOT_FOUND)
    return enrollment


async def _require_course(course_id: str) -> None:
    if not await repository.course_exists(course_id):
        raise NotFound(COURSE_NOT_FOUND)


async def roster_page(
    *, course_id: str, where: EnrollmentFilter, cursor: str | None, limit: int
) -> tuple[list[Enrollment], str | None]:
    """(one roster page, oldest first; the cursor of the next page or None): one indexed
    range read of limit + 1 enrollments after the cursor, whatever the page's depth."""
    await _require_course(course_id)
    page = await repository.enrollment_roster_page(
        course_id, where=where, after=cursor, limit=limit + 1
    )
    if len(page) > limit:
        return page[:limit], page[limit - 1].id
    return page, None


async def roster_csv(
    *, course_id: str, where: EnrollmentFilter, columns: Sequence[str], row
) -> AsyncIterator[str]:
    """The whole roster as CSV text chunks (a header, then one chunk per batch read): the
    file is never built in memory. The course is checked before the first byte."""
    await _require_course(course_id)

    async def chunks() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        yield buffer.getvalue()
        async for batch in repository.enrollment_roster_stream(course_id, where=where):
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(row(e) for e in batch)
            yield buffer.getvalue()

    return chunks()


@dataclass(frozen=True)
class CourseReport:
    course: Course
    counts: dict[str, int]
    overdue: int

    @property
    def members(self) -> int:
        return sum(self.counts[s] for s in MEMBER_STATUSES)

    @property
    def completion_rate(self) -> float:
        return round(self.counts[COMPLETED] / self.members, 4) if self.members else 0.0


async def course_report(*, course_id: str, moment: datetime | None = None) -> CourseReport:
    course, (counts, overdue) = await asyncio.gather(
        repository.course_get(course_id),
        repository.enrollment_status_counts(course_id, moment or repository.now()),
    )
    if course is None:
        raise NotFound(COURSE_NOT_FOUND)
    return CourseReport(
        course=course,
        counts={s: counts.get(s, 0) for s in ENROLLMENT_STATUSES},
        overdue=overdue,
    )
