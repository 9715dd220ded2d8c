"""The web console's pages: thin views over the services and selectors the API uses."""

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from accounts import selectors as accounts
from common.errors import Conflict, InvalidInput, NotFound
from console import charts, identifiers, job_views, reports
from console.forms import CourseForm, DueDateField
from console.pages import Pager, admin_page, member_page, query_text, render_page
from courses import assignment, selectors, services
from courses.documents import (
    COMPLETED,
    COURSE_ARCHIVED,
    COURSE_OPEN,
    COURSE_ORDERINGS,
    ENROLLMENT_STATUSES,
    WITHDRAWN,
    Enrollment,
    window_contains,
)
from courses.repository import now
from courses.serializers import (
    CSV_COLUMNS,
    MAX_USER_ID,
    course_changes,
    enrollment_csv_row,
)

CATALOGUE_PER_PAGE = 12
TABLE_PER_PAGE = 20
REPORT_PER_PAGE = 50
PREVIEW_ROWS = 500  # a dry run's first rows shown; its counts cover all
USER_SEARCH_RESULTS = 20
SORTS = {
    "-created_at": "Newest",
    "course_title": "Title A to Z",
    "-enrollers": "Most enrolled",
}
STATUS_FILTERS = {"all": "All", COURSE_OPEN: "Open", COURSE_ARCHIVED: "Archived"}


@member_page()
async def home(request: HttpRequest) -> HttpResponse:
    return redirect("console-catalogue")


# Learners


@member_page()
async def catalogue(request: HttpRequest) -> HttpResponse:
    search = query_text(request, "q")
    ordering = request.GET.get("sort", "-created_at")
    ordering = ordering if ordering in SORTS and ordering in COURSE_ORDERINGS else "-created_at"
    pager = Pager.from_request(request, per_page=CATALOGUE_PER_PAGE)
    count, courses = await selectors.course_list(
        limit=pager.limit, offset=pager.offset, search=search, ordering=ordering
    )
    context = {"courses": courses, "q": search, "sort": ordering, "sorts": SORTS}
    return await render_page(
        request, "console/catalogue.html", {**context, "pager": pager.counted(count)}
    )


def _admission(course) -> tuple[bool, str]:
    """Whether the signed-in user may enroll now, and why not."""
    if course.status == COURSE_ARCHIVED:
        return False, "This course is archived and takes no new enrollments."
    if not window_contains(course.enrollment_opens_at, course.enrollment_closes_at, now()):
        return False, "Enrollment is not open for this course right now."
    return True, ""


def withdrawal_refusal(enrollment: Enrollment) -> str:
    """Why the learner may not withdraw this enrollment themselves ("" when they may):
    the service's rules (services.enrollment_withdraw), said before the button is shown."""
    if enrollment.status == COMPLETED:
        return "Completed training stays on your record."
    if enrollment.status == WITHDRAWN:
        return "You have withdrawn."
    if enrollment.source == "admin":
        return "An admin assigned this training: ask an admin to withdraw you."
    return ""


@member_page()
async def course(request: HttpRequest, course_id: str) -> HttpResponse:
    found = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    enrollment = await selectors.enrollment_in_course(course_id=course_id, user_id=request.user.id)
    position = await selectors.enrollment_position(enrollment) if enrollment else None
    can_enroll, reason = _admission(found)
    context = {
        "course": found,
        "enrollment": enrollment if enrollment and enrollment.status != WITHDRAWN else None,
        "position": position,
        "overdue": enrollment is not None and enrollment.is_overdue(now()),
        "withdraw_refusal": withdrawal_refusal(enrollment) if enrollment else "",
        "can_enroll": can_enroll,
        "refusal": reason,
    }
    return await render_page(request, "console/course.html", context)


@member_page("POST")
async def enroll(request: HttpRequest, course_id: str) -> HttpResponse:
    user = request.user
    try:
        _, created = await services.enrollment_create(
            course_id=course_id, user_id=user.id, username=user.username
        )
    except Conflict as exc:
        messages.error(request, exc.detail)
    else:
        if created:
            messages.success(request, "You are enrolled. The course is now in My training.")
        else:
            messages.info(request, "You were already enrolled in this course.")
    return redirect("console-course", course_id=course_id)


@member_page()
async def my_training(request: HttpRequest) -> HttpResponse:
    """Overdue training first (its own table, on the first page), then everything."""
    pager = Pager.from_request(request, per_page=TABLE_PER_PAGE)
    (count, rows), (overdue_count, overdue) = await asyncio.gather(
        selectors.enrollment_list_for_user(
            user_id=request.user.id, limit=pager.limit, offset=pager.offset
        ),
        selectors.enrollment_list_for_user(
            user_id=request.user.id,
            limit=TABLE_PER_PAGE if pager.number == 1 else 0,
            offset=0,
            where=selectors.enrollment_filter(overdue=True),
        ),
    )
    positions = await selectors.waitlist_positions(row.enrollment for row in rows)
    moment = now()
    context = {
        "rows": [_training_row(row, positions, moment) for row in rows],
        "overdue": [_training_row(row, {}, moment) for row in overdue],
        "overdue_count": overdue_count,
        "pager": pager.counted(count),
    }
    return await render_page(request, "console/my_training.html", context)


def _training_row(row, positions: dict[str, int], moment) -> dict:
    return {
        "enrollment": row.enrollment,
        "course_title": row.course_title,
        "position": positions.get(row.enrollment.id),
        "overdue": row.enrollment.is_overdue(moment),
        "refusal": withdrawal_refusal(row.enrollment),
    }


# The pages a withdrawal may return to (the form says which; nothing else is followed).
_WITHDRAW_RETURNS = {"course": "console-course", "training": "console-my-training"}


@member_page("POST")
async def withdraw(request: HttpRequest, course_id: str) -> HttpResponse:
    try:
        await services.enrollment_withdraw(
            course_id=course_id, user_id=request.user.id, by_admin=False
        )
    except (services.AssignedEnrollment, Conflict, NotFound) as exc:
        messages.error(request, exc.detail)  # assigned, completed or none: nothing written
    else:
        messages.success(request, "You have withdrawn from this course.")
    target = _WITHDRAW_RETURNS.get(request.POST.get("back", ""), "console-my-training")
    if target == "console-course":
        return redirect(target, course_id=course_id)
    return redirect(target)


# Admins: courses


@admin_page()
async def manage_courses(request: HttpRequest) -> HttpResponse:
    search = query_text(request, "q")
    status = request.GET.get("status", "all")
    status = status if status in STATUS_FILTERS else "all"
    pager = Pager.from_request(request, per_page=TABLE_PER_PAGE)
    count, courses = await selectors.course_list(
        limit=pager.limit, offset=pager.offset, status=status, search=search
    )
    context = {
        "courses": courses,
        "q": search,
        "status": status,
        "statuses": STATUS_FILTERS,
        "pager": pager.counted(count),
    }
    return await render_page(request, "console/manage/courses.html", context)


@admin_page("GET", "POST")
async def course_create(request: HttpRequest) -> HttpResponse:
    form = CourseForm(request.POST) if request.method == "POST" else CourseForm()
    if request.method == "POST" and form.is_valid():
        data = form.validated
        created = await services.course_create(
            course_title=data["course_title"],
            course_description=data["course_description"],
            amount=data["display_price"]["amount"],
            currency=data["display_price"]["currency"],
            capacity=data["capacity"],
            enrollment_opens_at=data["enrollment_opens_at"],
            enrollment_closes_at=data["enrollment_closes_at"],
            status=data["status"],
        )
        messages.success(request, f"Course “{created.course_title}” created.")
        return redirect("console-manage-course", course_id=created.id)
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "creating": True}
    return await render_page(request, "console/manage/course_form.html", context, status=status)


@admin_page("GET", "POST")
async def course_edit(request: HttpRequest, course_id: str) -> HttpResponse:
    existing = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    if request.method == "GET":
        form = CourseForm.for_course(existing)
    else:
        form = CourseForm(request.POST)
        if form.is_valid():
            try:
                await services.course_update(
                    course_id=course_id, changes=course_changes(form.validated)
                )
            except InvalidInput as exc:
                form.add_error(None, exc.detail)
            else:
                messages.success(request, "Changes saved.")
                return redirect("console-manage-course", course_id=course_id)
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "course": existing, "creating": False}
    return await render_page(request, "console/manage/course_form.html", context, status=status)


@admin_page("POST")
async def course_status(request: HttpRequest, course_id: str) -> HttpResponse:
    target = request.POST.get("status")
    if target not in (COURSE_OPEN, COURSE_ARCHIVED):
        context = {"title": "Bad request", "detail": "Unknown course status.", "status": 400}
        return await render_page(request, "console/error.html", context, status=400)
    updated = await services.course_update(course_id=course_id, changes={"status": target})
    verb = "archived" if target == COURSE_ARCHIVED else "reopened"
    messages.success(request, f"Course “{updated.course_title}” {verb}.")
    return redirect("console-manage-course", course_id=course_id)


ROSTER_PER_PAGE = 50
ROSTER_STATUSES = {"": "All statuses", **{s: s.capitalize() for s in ENROLLMENT_STATUSES}}
_CURSOR = re.compile(r"[0-9a-f]{24}")


def _roster_filter(request: HttpRequest):
    """The roster's filters from the query string, as the API's `?status=&search=` reads
    them (an unknown status is all of them)."""
    status = request.GET.get("status", "")
    status = status if status in ROSTER_STATUSES else ""
    search = query_text(request, "search", max_length=150)
    where = selectors.enrollment_filter(status=status or None, search=search)
    return status, search, where


@admin_page()
async def manage_course(request: HttpRequest, course_id: str) -> HttpResponse:
    """The course, its report's counts as a chart, and its roster (cursor-paged)."""
    status, search, where = _roster_filter(request)
    cursor = request.GET.get("cursor", "")
    cursor = cursor if _CURSOR.fullmatch(cursor) else None
    report, (page, next_cursor) = await asyncio.gather(
        selectors.course_report(course_id=course_id),
        selectors.roster_page(
            course_id=course_id, where=where, cursor=cursor, limit=ROSTER_PER_PAGE
        ),
    )
    positions = await selectors.waitlist_positions(page)
    moment = now()
    filters = {k: v for k, v in (("status", status), ("search", search)) if v}
    context = {
        "course": report.course,
        "report": report,
        "chart": charts.bar_chart(
            [(s, s.capitalize(), report.counts[s]) for s in ENROLLMENT_STATUSES]
            + [("overdue", "Overdue", report.overdue)]
        ),
        "members": [(e, positions.get(e.id), e.is_overdue(moment)) for e in page],
        "status": status,
        "statuses": ROSTER_STATUSES,
        "search": search,
        "filter_query": urlencode(filters),
        "next_query": urlencode({**filters, "cursor": next_cursor}) if next_cursor else "",
        "paged": cursor is not None,
    }
    return await render_page(request, "console/manage/course.html", context)


@admin_page()
async def roster_csv(request: HttpRequest, course_id: str) -> HttpResponse:
    """The whole (filtered) roster as CSV, streamed by the selector, as the API's is."""
    _, _, where = _roster_filter(request)
    chunks = await selectors.roster_csv(
        course_id=course_id, where=where, columns=CSV_COLUMNS, row=enrollment_csv_row
    )
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="roster-{course_id}.csv"'
    return response


# Admins: the assign panel


@admin_page("GET", "POST")
async def assign(request: HttpRequest, course_id: str) -> HttpResponse:
    """Pick users (search; or paste ids, usernames or emails), choose a due date, then
    preview with a dry run; the preview's form confirms."""
    found = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    source = request.POST if request.method == "POST" else request.GET
    search = source.get("q", "").replace("\x00", "").strip()[:254]
    picked = _ids(source.getlist("picked"))
    if request.method == "POST" and source.get("action") == "preview":
        request_, errors = _requested(source)
        if not errors:
            return await _preview(request, found, request_)
        context = _panel(found, search, await reports.named_users(picked), [], source, errors)
        return await render_page(request, "console/manage/assign.html", context, status=400)
    results = []
    if search:
        _, results = await accounts.user_list(search=search, limit=USER_SEARCH_RESULTS, offset=0)
    context = _panel(found, search, await reports.named_users(picked), results, source, [])
    return await render_page(request, "console/manage/assign.html", context)


@dataclass
class _Request:
    """What the panel's form asks for: the picked ids, the pasted text and the due date
    as sent (the preview carries them to the confirmation), and the users they name."""

    picked: list[int]
    pasted: str
    due_text: str
    due_at: datetime | None
    items: list[assignment.Requested]


def _requested(source) -> tuple[_Request, list[str]]:
    """The form's users and due date, validated as the API validates them."""
    errors = []
    due_text = source.get("due_at", "").replace("\x00", "").strip()[:32]
    due_at = None
    try:
        due_at = DueDateField().clean(due_text)
    except forms.ValidationError as exc:
        errors.append(f"Due date: {' '.join(exc.messages)}")
    picked = _ids(source.getlist("picked"))
    pasted_text = source.get("pasted", "")[:200_000]
    pasted = identifiers.parse_pasted(pasted_text, due_at)
    items = [assignment.Requested(assignment.USER_ID, uid, due_at) for uid in picked]
    items += pasted.items
    if pasted.too_long:
        shown = ", ".join(pasted.too_long[:5])
        errors.append(f"These name no user (too long, or not a valid id): {shown}.")
    if not items:
        errors.append("Pick at least one user, or paste user ids, usernames or emails.")
    if len(items) > settings.ASSIGN_MAX_USERS:
        errors.append(f"At most {settings.ASSIGN_MAX_USERS} users per assignment.")
    return _Request(picked, pasted_text, due_text, due_at, items), errors


def _panel(course, search, picked_users, results, source, errors) -> dict:
    picked_ids = {u[0] for u in picked_users}
    return {
        "course": course,
        "q": search,
        "picked_users": picked_users,
        "results": [u for u in results if u.id not in picked_ids],
        "pasted": source.get("pasted", "")[:200_000],
        "due_at": source.get("due_at", "")[:32],
        "errors": errors,
        "max_users": settings.ASSIGN_MAX_USERS,
    }


def _ids(values: list[str]) -> list[int]:
    return [
        int(v)
        for v in values[: settings.ASSIGN_MAX_USERS + 1]
        if v.isascii() and v.isdigit() and 0 < len(v) < 20 and 1 <= int(v) <= MAX_USER_ID
    ]


def _positioned(rows: list[tuple], positions: dict[int, int]) -> list[tuple]:
    """`rows` with each waitlisted user's queue position added (None for the others)."""
    return [
        (*row, positions.get(row[1]) if row[3] == assignment.WAITLISTED else None) for row in rows
    ]


def _queued(results: list[dict], ahead: int) -> dict[int, int]:
    """The positions a dry run's waitlisted users would take: after the `ahead` already
    waiting, in request order (the assignment queues them so)."""
    waiting = [r["user_id"] for r in results if r["status"] == assignment.WAITLISTED]
    return {uid: ahead + n for n, uid in enumerate(waiting, start=1)}


async def _preview(request: HttpRequest, course, asked: _Request) -> HttpResponse:
    """The assignment's dry run: the report it would give now, nothing written."""
    try:
        report, ahead = await asyncio.gather(
            assignment.assignment_bulk_create(
                course_id=course.id,
                items=asked.items,
                admin_id=request.user.id,
                due_at=asked.due_at,
                dry_run=True,
            ),
            selectors.waitlist_length(course_id=course.id),
        )
    except Conflict as exc:
        messages.error(request, exc.detail)
        return redirect("console-manage-course", course_id=course.id)
    shown = report.results[:PREVIEW_ROWS]
    context = {
        "course": course,
        "asked": asked,
        "summary": report.summary,
        "rows": _positioned(await reports.result_rows(shown), _queued(report.results, ahead)),
        "hidden_rows": len(report.results) - len(shown),
        "assignable": report.summary[assignment.ENROLLED] + report.summary["waitlisted"],
    }
    return await render_page(request, "console/manage/assign_preview.html", context)


@admin_page("POST")
async def assign_confirm(request: HttpRequest, course_id: str) -> HttpResponse:
    asked, errors = _requested(request.POST)
    if errors:
        messages.error(request, " ".join(errors))
        return redirect("console-assign", course_id=course_id)
    try:
        report = await assignment.assignment_bulk_create(
            course_id=course_id, items=asked.items, admin_id=request.user.id, due_at=asked.due_at
        )
    except Conflict as exc:
        messages.error(request, exc.detail)
        return redirect("console-manage-course", course_id=course_id)
    return HttpResponseRedirect(
        reverse("console-assign-report", kwargs={"course_id": course_id, "report_id": report.id})
    )


async def _stored_report(course_id: str, report_id: str):
    stored = await assignment.assignment_get(assignment_id=report_id)
    if stored.course_id != course_id:
        raise NotFound(assignment.ASSIGNMENT_NOT_FOUND)
    return stored


@admin_page()
async def assign_report(request: HttpRequest, course_id: str, report_id: str) -> HttpResponse:
    found, stored = await asyncio.gather(
        selectors.course_get(course_id=course_id, with_enrolled_users=False),
        _stored_report(course_id, report_id),
    )
    results = stored.results or []
    pager = Pager.from_request(request, per_page=REPORT_PER_PAGE).counted(len(results))
    shown = results[pager.offset : pager.offset + pager.limit]
    waiting = [r["user_id"] for r in shown if r["status"] == assignment.WAITLISTED]
    rows, positions = await asyncio.gather(
        reports.result_rows(shown),
        selectors.waitlist_positions_of(course_id=course_id, user_ids=waiting),
    )
    context = {
        "course": found,
        "report": stored,
        "rows": _positioned(rows, positions),  # positions now: the queue moves on
        "pager": pager,
    }
    return await render_page(request, "console/manage/assign_report.html", context)


@admin_page()
async def assign_report_csv(request: HttpRequest, course_id: str, report_id: str) -> HttpResponse:
    stored = await _stored_report(course_id, report_id)
    rows = await reports.result_rows(stored.results or [])
    response = HttpResponse(reports.csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="assignment-{report_id}.csv"'
    return response


@admin_page()
async def assignments(request: HttpRequest, course_id: str) -> HttpResponse:
    """The course's assignment history: its stored reports, newest first, and its latest
    upload jobs."""
    pager = Pager.from_request(request, per_page=TABLE_PER_PAGE)
    found, (count, stored) = await asyncio.gather(
        selectors.course_get(course_id=course_id, with_enrolled_users=False),
        assignment.assignment_list(course_id=course_id, limit=pager.limit, offset=pager.offset),
    )
    (job_count, recent), admins = await asyncio.gather(
        job_views.recent_jobs(course_id),
        reports.named_users([s.assigned_by for s in stored]),
    )
    names = {uid: name for uid, name, _ in admins}
    context = {
        "course": found,
        "rows": [(s, names.get(s.assigned_by, "")) for s in stored],
        "pager": pager.counted(count),
        "jobs": recent,
        "job_count": job_count,
    }
    return await render_page(request, "console/manage/assignments.html", context)
