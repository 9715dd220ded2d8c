"""The web console's pages: thin views over the services and selectors the API uses."""

import asyncio

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse

from accounts import selectors as accounts
from common.errors import Conflict, InvalidInput, NotFound
from console import identifiers, reports
from console.forms import CourseForm
from console.pages import Pager, admin_page, member_page, query_text, render_page
from courses import assignment, selectors, services
from courses.documents import (
    COMPLETED,
    COURSE_ARCHIVED,
    COURSE_OPEN,
    COURSE_ORDERINGS,
    WITHDRAWN,
    Enrollment,
    window_contains,
)
from courses.repository import now
from courses.serializers import course_changes

CATALOGUE_PER_PAGE = 12
TABLE_PER_PAGE = 20
REPORT_PER_PAGE = 50
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


@admin_page()
async def manage_course(request: HttpRequest, course_id: str) -> HttpResponse:
    found = await selectors.course_get(course_id=course_id, with_enrolled_users=True)
    members = found.enrolled_users or []
    pager = Pager.from_request(request, per_page=TABLE_PER_PAGE).counted(len(members))
    context = {
        "course": found,
        "members": members[pager.offset : pager.offset + pager.limit],
        "embedded_limit": settings.COURSE_EMBEDDED_MEMBERS,
        "pager": pager,
    }
    return await render_page(request, "console/manage/course.html", context)


# Admins: the assign panel


@admin_page("GET", "POST")
async def assign(request: HttpRequest, course_id: str) -> HttpResponse:
    """Pick users (search, or paste ids), then preview; the preview's form confirms."""
    found = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    source = request.POST if request.method == "POST" else request.GET
    search = source.get("q", "").replace("\x00", "").strip()[:254]
    picked = _ids(source.getlist("picked"))
    pasted_text = source.get("pasted", "")[:200_000]
    if request.method == "POST" and source.get("action") == "preview":
        pasted = identifiers.parse_pasted(pasted_text)
        user_ids = picked + pasted.user_ids
        errors = []
        if pasted.not_accepted:
            shown = ", ".join(pasted.not_accepted[:5])
            errors.append(f"{identifiers.NOT_YET_ACCEPTED}; not assigned: {shown}.")
        if not user_ids:
            errors.append("Pick at least one user, or paste user ids.")
        if len(user_ids) > settings.ASSIGN_MAX_USERS:
            errors.append(f"At most {settings.ASSIGN_MAX_USERS} users per assignment.")
        if not errors:
            return await _preview(request, found, user_ids)
        picked_users = await _users(picked)
        context = _panel(found, search, picked_users, [], pasted_text, errors)
        return await render_page(request, "console/manage/assign.html", context, status=400)
    results = []
    if search:
        _, results = await accounts.user_list(search=search, limit=USER_SEARCH_RESULTS, offset=0)
    picked_users = await _users(picked)
    context = _panel(found, search, picked_users, results, pasted_text, [])
    return await render_page(request, "console/manage/assign.html", context)


def _panel(course, search, picked_users, results, pasted, errors) -> dict:
    picked_ids = {u[0] for u in picked_users}
    return {
        "course": course,
        "q": search,
        "picked_users": picked_users,
        "results": [u for u in results if u.id not in picked_ids],
        "pasted": pasted,
        "errors": errors,
        "max_users": settings.ASSIGN_MAX_USERS,
    }


def _ids(values: list[str]) -> list[int]:
    ids = identifiers.parse_pasted(" ".join(values[: settings.ASSIGN_MAX_USERS + 1]))
    return ids.user_ids


async def _users(ids: list[int]) -> list[tuple[int, str, bool]]:
    """(id, username, is_active) of these ids that exist, in the given order."""
    if not ids:
        return []
    found = {row[0]: row for row in await accounts.users_by_ids(ids=list(dict.fromkeys(ids)))}
    return [found[i] for i in dict.fromkeys(ids) if i in found]


async def _preview(request: HttpRequest, course, user_ids: list[int]) -> HttpResponse:
    distinct = list(dict.fromkeys(user_ids))
    known = await _users(distinct)
    known_ids = {row[0] for row in known}
    context = {
        "course": course,
        "user_ids": distinct,
        "active": [row for row in known if row[2]],
        "inactive": [row for row in known if not row[2]],
        "unknown": [uid for uid in distinct if uid not in known_ids],
        "duplicates": len(user_ids) - len(distinct),
    }
    return await render_page(request, "console/manage/assign_preview.html", context)


@admin_page("POST")
async def assign_confirm(request: HttpRequest, course_id: str) -> HttpResponse:
    user_ids = _ids(request.POST.getlist("user_id"))
    if not user_ids or len(user_ids) > settings.ASSIGN_MAX_USERS:
        messages.error(request, "Nothing to assign: pick users again.")
        return redirect("console-assign", course_id=course_id)
    found = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    try:
        report = await assignment.assignment_bulk_create(
            course_id=course_id,
            items=[assignment.Requested(assignment.USER_ID, uid) for uid in user_ids],
            admin_id=request.user.id,
            with_identifiers=False,
        )
    except Conflict as exc:
        messages.error(request, exc.detail)
        return redirect("console-manage-course", course_id=course_id)
    report_id = await reports.save(request.session, report, found.course_title)
    return HttpResponseRedirect(
        reverse("console-assign-report", kwargs={"course_id": course_id, "report_id": report_id})
    )


@admin_page()
async def assign_report(request: HttpRequest, course_id: str, report_id: str) -> HttpResponse:
    stored = await reports.load(request.session, course_id, report_id)
    if stored is None:
        return await _report_gone(request)
    pager = Pager.from_request(request, per_page=REPORT_PER_PAGE).counted(len(stored.results))
    rows = stored.results[pager.offset : pager.offset + pager.limit]
    names = {uid: name for uid, name, _ in await _users([uid for uid, _ in rows])}
    context = {
        "report": stored,
        "rows": [(uid, names.get(uid, ""), status) for uid, status in rows],
        "pager": pager,
    }
    return await render_page(request, "console/manage/assign_report.html", context)


@admin_page()
async def assign_report_csv(request: HttpRequest, course_id: str, report_id: str) -> HttpResponse:
    stored = await reports.load(request.session, course_id, report_id)
    if stored is None:
        return await _report_gone(request)
    names = {uid: name for uid, name, _ in await _users([uid for uid, _ in stored.results])}
    response = HttpResponse(reports.as_csv(stored, names), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="assignment-{course_id}.csv"'
    return response


async def _report_gone(request: HttpRequest) -> HttpResponse:
    detail = (
        "This assignment report is no longer available: the console keeps the latest "
        "report of your session only."
    )
    context = {"title": "Report not found", "detail": detail, "status": 404}
    return await render_page(request, "console/error.html", context, status=404)
