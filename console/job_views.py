"""The console's assignment jobs: upload a CSV, watch the job's progress live, cancel it,
page through its per-user results and download them. Thin views over courses.jobs, the
service behind the API's `/assignment-jobs/`.

Live progress is progressive enhancement: the job page works as a plain page with a
Refresh link; console/static/console/job.js polls the progress fragment (`job_progress`)
every second while the job is queued or running, and reloads the page once it ends.
"""

import asyncio

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect

from common.errors import Conflict, InvalidInput, NotFound
from console import reports
from console.forms import UploadJobForm
from console.pages import Pager, admin_page, render_page
from courses import jobs, selectors
from courses.job_repository import ACTIVE, SUCCEEDED, AssignmentJob
from courses.repository import now

JOBS_PER_PAGE = 20
RECENT_JOBS = 5  # shown on the assignment history page
RESULTS_PER_PAGE = 50
CSV_PAGE = 5000  # results read per query while streaming the CSV
# The report statuses a job counts, as the summary cards show them.
SUMMARY_CARDS = (
    ("enrolled", "Enrolled"),
    ("waitlisted", "Waitlisted"),
    ("already_enrolled", "Already enrolled"),
    ("not_found", "Not found"),
    ("inactive", "Inactive"),
    ("duplicates_in_request", "Duplicates"),
)
# A dry run's cards say what would happen.
DRY_RUN_LABELS = {"enrolled": "Would be enrolled", "waitlisted": "Would be waitlisted"}


async def _course_job(course_id: str, job_id: str):
    """The course and its job; a job of another course is not found here."""
    found, job = await asyncio.gather(
        selectors.course_get(course_id=course_id, with_enrolled_users=False),
        jobs.job_get(job_id=job_id),
    )
    if job.course_id != course_id:
        raise NotFound(jobs.JOB_NOT_FOUND)
    return found, job


def _progress(job: AssignmentJob) -> dict:
    """What the progress fragment shows: status, processed of total, ETA or duration,
    summary."""
    percent = int(job.processed * 100 / job.total) if job.total else 0
    return {
        "job": job,
        "active": job.status in ACTIVE,
        "percent": percent,
        "eta": jobs.job_eta_seconds(job),
        # From the upload to the end (queue wait included), as the admin lived it.
        "took": (job.finished_at - job.created_at).total_seconds() if job.finished_at else None,
        "cards": [
            (key, DRY_RUN_LABELS.get(key, label) if job.dry_run else label, job.summary.get(key, 0))
            for key, label in SUMMARY_CARDS
        ],
    }


async def _jobs_with_admins(listed: list[AssignmentJob]) -> list[tuple[AssignmentJob, str]]:
    names = {uid: name for uid, name, _ in await reports.named_users([j.admin_id for j in listed])}
    return [(job, names.get(job.admin_id, "")) for job in listed]


async def recent_jobs(course_id: str) -> tuple[int, list[tuple[AssignmentJob, str]]]:
    """The count and the latest few jobs of a course (the assignment history shows them)."""
    count, listed = await jobs.job_list(course_id=course_id, limit=RECENT_JOBS, offset=0)
    return count, await _jobs_with_admins(listed)


@admin_page("GET", "POST")
async def job_new(request: HttpRequest, course_id: str) -> HttpResponse:
    """The upload form. "Preview" (the default) starts a dry run whose page confirms it;
    "Upload and start" starts the real job. Either opens the job's page."""
    found = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    form = UploadJobForm(request.POST or None, request.FILES or None)
    errors = []
    if request.method == "POST":
        preview = request.POST.get("action") != "start"
        if form.is_valid():
            upload, options = form.cleaned_data["file"], form.cleaned_data
            try:
                job = await jobs.job_create_from_csv(
                    course_id=course_id,
                    admin_id=request.user.id,
                    upload=upload,
                    due_at=options["due_at"],
                    override_capacity=options["override_capacity"],
                    dry_run=preview,
                )
            except (InvalidInput, Conflict) as exc:
                errors.append(f"{upload.name}: {exc.detail}")
            else:
                started = "Preview started" if preview else "Job started"
                messages.success(request, f"{started}: {job.total:,} users from {upload.name}.")
                return redirect("console-job", course_id=course_id, job_id=job.id)
        else:
            errors += [
                f"{form.fields[name].label}: {message}" if name != "file" else message
                for name, messages_ in form.errors.items()
                for message in messages_
            ]
    status = 400 if errors else 200
    context = {
        "course": found,
        "form": form,
        "errors": errors,
        "max_users": settings.ASSIGN_MAX_USERS,
    }
    return await render_page(request, "console/manage/job_new.html", context, status=status)


@admin_page()
async def job_list(request: HttpRequest, course_id: str) -> HttpResponse:
    pager = Pager.from_request(request, per_page=JOBS_PER_PAGE)
    found, (count, listed) = await asyncio.gather(
        selectors.course_get(course_id=course_id, with_enrolled_users=False),
        jobs.job_list(course_id=course_id, limit=pager.limit, offset=pager.offset),
    )
    context = {
        "course": found,
        "jobs": await _jobs_with_admins(listed),
        "pager": pager.counted(count),
    }
    return await render_page(request, "console/manage/jobs.html", context)


@admin_page()
async def job_detail(request: HttpRequest, course_id: str, job_id: str) -> HttpResponse:
    """The job: live progress while it runs; its per-user results (cursor-paged) once it
    has ended; a finished dry run's confirm button."""
    return await _detail(request, course_id, job_id)


async def _detail(
    request: HttpRequest, course_id: str, job_id: str, *, error: str = "", status: int = 200
) -> HttpResponse:
    found, job = await _course_job(course_id, job_id)
    raw_cursor = request.GET.get("cursor")
    try:
        cursor = jobs.parse_cursor(raw_cursor)
    except InvalidInput:
        cursor, raw_cursor = (0, 0), None
    rows, next_cursor = [], None
    if job.status not in ACTIVE:
        page = await jobs.job_results_page(job_id=job_id, cursor=cursor, limit=RESULTS_PER_PAGE)
        rows = await reports.result_rows(page.results)
        next_cursor = page.next_cursor
    admin = await reports.named_users([job.admin_id])
    # A preview whose due date has passed cannot be confirmed (job_confirm says so too).
    expired = job.dry_run and job.due_at is not None and job.due_at <= now()
    context = {
        "course": found,
        **_progress(job),
        "admin_name": admin[0][1] if admin else "",
        "rows": rows,
        "next_cursor": next_cursor,
        "paged": raw_cursor is not None,
        "confirmable": job.dry_run
        and job.status == SUCCEEDED
        and not job.confirmed_job_id
        and not expired,
        "expired": expired,
        "assignable": job.summary.get("enrolled", 0) + job.summary.get("waitlisted", 0),
        "error": error,
    }
    return await render_page(request, "console/manage/job.html", context, status=status)


@admin_page("POST")
async def job_confirm(request: HttpRequest, course_id: str, job_id: str) -> HttpResponse:
    """Confirm a finished dry run: the real job from its stored input and options (no new
    upload). Refused (the job page with the reason, 409 or 400) for anything else."""
    await _course_job(course_id, job_id)
    try:
        job = await jobs.job_confirm(job_id=job_id, admin_id=request.user.id)
    except InvalidInput as exc:
        # The dry run's due date passed meanwhile: a new upload chooses another.
        detail = f"The due date of this preview has passed: upload the file again. ({exc.detail})"
        return await _detail(request, course_id, job_id, error=detail, status=400)
    except Conflict as exc:  # not a finished dry run, confirmed already, course archived
        return await _detail(request, course_id, job_id, error=exc.detail, status=409)
    messages.success(request, f"Confirmed: assigning {job.total:,} users.")
    return redirect("console-job", course_id=course_id, job_id=job.id)


@admin_page()
async def job_progress(request: HttpRequest, course_id: str, job_id: str) -> HttpResponse:
    """The job page's live part alone, for job.js; `X-Job-Status` says when to stop."""
    _, job = await _course_job(course_id, job_id)
    response = await render_page(request, "console/manage/_job_progress.html", _progress(job))
    response["X-Job-Status"] = job.status
    response["Cache-Control"] = "no-store"
    return response


@admin_page("POST")
async def job_cancel(request: HttpRequest, course_id: str, job_id: str) -> HttpResponse:
    await _course_job(course_id, job_id)
    try:
        await jobs.job_cancel(job_id=job_id)
    except jobs.JobFinished as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, "Job cancelled: the users already processed stay assigned.")
    return redirect("console-job", course_id=course_id, job_id=job_id)


@admin_page()
async def job_results_csv(request: HttpRequest, course_id: str, job_id: str) -> HttpResponse:
    """Every per-user result of the job, streamed CSV_PAGE rows at a time."""
    await _course_job(course_id, job_id)

    async def lines():
        cursor, header = (0, 0), True
        while True:
            page = await jobs.job_results_page(job_id=job_id, cursor=cursor, limit=CSV_PAGE)
            rows = await reports.result_rows(page.results)
            yield reports.csv_lines(rows, header=header)
            if page.next_cursor is None:
                return
            cursor, header = jobs.parse_cursor(page.next_cursor), False

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="assignment-job-{job_id}.csv"'
    return response
