"""The upload page's options and its preview: a due date and "Override capacity" on the
form, "Preview" (a dry-run job) whose page confirms it into the real job from the stored
input (courses.jobs.job_confirm), and every refusal of a confirmation as a clear 4xx.
A real arq worker (burst, local Redis) runs the jobs."""

import re
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from bson import ObjectId

from bench.jobs_users import create_users
from courses import jobs
from mongo.client import get_db
from tests.console.conftest import csrf_from
from tests.console.test_console_jobs import _statuses, _upload

DUE = "2031-05-04T10:30"


def _job_id(url: str) -> str:
    return url.rstrip("/").split("/")[-1]


async def _confirm(api, job_url: str, *, token: str | None = None):
    token = token or csrf_from((await api.get(job_url)).text)
    return await api.post(f"{job_url}confirm/", data={"csrfmiddlewaretoken": token})


async def test_the_form_has_labelled_due_date_and_override_capacity_and_two_buttons(
    api, console_as, create_course
):
    course = await create_course(capacity=30)
    await console_as(is_staff=True)
    html = (await api.get(f"/console/manage/courses/{course['id']}/jobs/new/")).text
    assert '<label for="due_at">Due date (UTC)' in html
    assert 'id="due_at" name="due_at" type="datetime-local"' in html
    assert '<label class="pick" for="override_capacity">' in html
    assert 'id="override_capacity" name="override_capacity" type="checkbox"' in html
    assert "past the course's 30 seats" in html
    preview = html.index('value="preview" class="button button-primary">Preview</button>')
    start = html.index('value="start" class="button button-secondary">Upload and start</button>')
    assert preview < start  # Enter submits the first: the preview


async def test_a_bad_due_date_is_a_form_error_and_starts_no_job(api, console_as, create_course):
    course = await create_course()
    await console_as(is_staff=True)
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    for value, message in [(past, "Must be in the future."), ("soon", "Expected an ISO 8601 time")]:
        for action in ("preview", "start"):
            refused = await _upload(api, course["id"], b"user_id\n1\n", action=action, due_at=value)
            assert refused.status_code == 400
            assert f"Due date (UTC): {message}" in refused.text
            assert f'value="{value}"' in refused.text  # kept for the correction
            assert 'aria-invalid="true"' in refused.text
    assert (await jobs.job_list(course_id=course["id"], limit=5, offset=0))[0] == 0


async def test_preview_then_confirm_assigns_with_the_same_options(
    api, console_as, create_course, job_queue
):
    # given a course of 3 seats and a CSV of 5 emails (mixed case), one with its own due_at
    course = await create_course(capacity=3)
    admin = await console_as(is_staff=True)
    ids = await sync_to_async(create_users)(5, prefix="prev")
    body = (
        "email,due_at\n"
        "Prev0@Example.com,2032-01-01T00:00:00Z\n"
        + "".join(f"PREV{i}@example.com,\n" for i in range(1, 5))
    ).encode()
    # when the admin previews it with a due date and override_capacity
    created = await _upload(
        api, course["id"], body, action="preview", due_at=DUE, override_capacity="on"
    )
    assert created.status_code == 302, created.text[:500]
    preview_url = created.headers["Location"]
    queued = (await api.get(preview_url)).text
    assert "Preview started: 5 users from cohort.csv." in queued
    assert "Preview — nothing written" in queued
    assert "Confirm and assign" not in queued  # not before it has finished
    assert "4 May 2031, 10:30 UTC" in queued
    assert "capacity overridden" in queued
    await job_queue()
    # then its page shows what would happen, and nothing is written
    page = (await api.get(preview_url)).text
    assert "Preview — nothing written" in page
    assert "Would be enrolled" in page
    assert re.search(r'data-summary="enrolled">5<', page)
    assert _statuses(page) == ["enrolled"] * 5
    assert "Confirm and assign 5 users" in page
    assert "Download preview CSV" in page
    assert await get_db().enrollments.count_documents({}) == 0
    # when the admin confirms
    confirmed = await _confirm(api, preview_url)
    assert confirmed.status_code == 302
    job_url = confirmed.headers["Location"]
    assert job_url != preview_url
    job = await jobs.job_get(job_id=_job_id(job_url))
    assert job.dry_run is False
    assert job.override_capacity is True
    assert job.due_at == datetime(2031, 5, 4, 10, 30, tzinfo=UTC)
    assert job.admin_id == admin.id
    assert job.preview_job_id == _job_id(preview_url)
    started = (await api.get(job_url)).text
    assert "Confirmed: assigning 5 users." in started
    assert "from its preview" in started
    await job_queue()
    # then everyone is enrolled past the capacity, with the file's or the form's due date
    done = (await api.get(job_url)).text
    assert _statuses(done) == ["enrolled"] * 5
    deadlines = {
        doc["user_id"]: doc["due_at"].isoformat()[:16]
        async for doc in get_db().enrollments.find({"course_id": ObjectId(course["id"])})
    }
    assert deadlines == {
        ids[0]: "2032-01-01T00:00",
        **{uid: "2031-05-04T10:30" for uid in ids[1:]},
    }
    # and the preview says where it went, and cannot be confirmed again
    again = await _confirm(api, preview_url)
    assert again.status_code == 409
    assert "This dry run has been confirmed already." in again.text
    assert "see the job that assigned its users" in again.text
    assert "Confirm and assign" not in again.text
    assert (await jobs.job_list(course_id=course["id"], limit=5, offset=0))[0] == 2
    listed = (await api.get(f"/console/manage/courses/{course['id']}/jobs/")).text
    assert listed.count(">Preview</span>") == 1


async def test_without_override_the_preview_waitlists_over_capacity(
    api, console_as, create_course, job_queue
):
    course = await create_course(capacity=2)
    await console_as(is_staff=True)
    await sync_to_async(create_users)(4, prefix="wait")
    body = b"username\nwait0\nwait1\nwait2\nwait3\n"
    preview_url = (await _upload(api, course["id"], body, action="preview")).headers["Location"]
    await job_queue()
    page = (await api.get(preview_url)).text
    assert _statuses(page) == ["enrolled"] * 2 + ["waitlisted"] * 2
    assert "Would be waitlisted" in page
    assert "users over capacity are waitlisted" in page
    assert "Confirm and assign 4 users" in page  # the waitlisted are assigned too


async def test_confirm_is_refused_clearly_for_anything_but_a_finished_dry_run(
    api, console_as, create_course, job_queue, make_user
):
    course, other = await create_course(), await create_course()
    await console_as(is_staff=True)
    user = await make_user()
    body = f"user_id\n{user.id}\n".encode()
    # an unfinished dry run
    preview_url = (await _upload(api, course["id"], body, action="preview")).headers["Location"]
    early = await _confirm(api, preview_url)
    assert early.status_code == 409
    assert "The dry run has not finished yet" in early.text
    # a real job
    job_url = (await _upload(api, course["id"], body)).headers["Location"]
    await job_queue()
    real = await _confirm(api, job_url)
    assert real.status_code == 409
    assert "This job is not a dry run" in real.text
    # a cancelled dry run
    cancelled_url = (await _upload(api, course["id"], body, action="preview")).headers["Location"]
    await jobs.job_cancel(job_id=_job_id(cancelled_url))
    cancelled = await _confirm(api, cancelled_url)
    assert cancelled.status_code == 409
    assert "upload the file again" in cancelled.text
    # another course's, an unknown one, a GET, no CSRF token
    token = csrf_from((await api.get(preview_url)).text)
    elsewhere = preview_url.replace(course["id"], other["id"])
    assert (await _confirm(api, elsewhere, token=token)).status_code == 404
    unknown = f"/console/manage/courses/{course['id']}/jobs/{ObjectId()}/"
    assert (await _confirm(api, unknown, token=token)).status_code == 404
    assert (await api.get(f"{preview_url}confirm/")).status_code == 405
    assert (await api.post(f"{preview_url}confirm/")).status_code == 403
    assert (await jobs.job_list(course_id=course["id"], limit=9, offset=0))[0] == 3
    # a learner
    await api.post("/console/logout/", data={"csrfmiddlewaretoken": token})
    await console_as()
    learner = await api.post(f"{preview_url}confirm/", data={})
    assert learner.status_code == 403


async def test_a_preview_whose_due_date_passed_asks_for_a_new_upload(
    api, console_as, create_course, job_queue, make_user
):
    course = await create_course()
    await console_as(is_staff=True)
    user = await make_user()
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    body = f"user_id\n{user.id}\n".encode()
    created = await _upload(api, course["id"], body, action="preview", due_at=soon)
    preview_url = created.headers["Location"]
    await job_queue()
    await get_db().assignment_jobs.update_one(
        {"_id": _job_id(preview_url)}, {"$set": {"due_at": datetime.now(UTC) - timedelta(1)}}
    )
    refused = await _confirm(api, preview_url)
    assert refused.status_code == 400
    assert "The due date of this preview has passed: upload the file again." in refused.text
    assert "Confirm and assign" not in refused.text
    assert "whose due date has passed" in refused.text
    assert (await jobs.job_list(course_id=course["id"], limit=5, offset=0))[0] == 1


async def test_a_preview_whose_stored_input_expired_asks_for_a_new_upload(
    api, console_as, create_course, job_queue, make_user
):
    # given a finished preview the TTL monitor has started deleting (its input chunk is
    # gone, its job document not yet: JOB_RETENTION_DAYS)
    course = await create_course()
    await console_as(is_staff=True)
    user = await make_user()
    created = await _upload(api, course["id"], f"user_id\n{user.id}\n".encode(), action="preview")
    preview_url = created.headers["Location"]
    await job_queue()
    await get_db().assignment_job_chunks.delete_many({"job_id": _job_id(preview_url)})
    # when it is confirmed, the page says so with a 409 and no job is started
    refused = await _confirm(api, preview_url)
    assert refused.status_code == 409
    assert "stored input has expired (jobs are kept 30 days)" in refused.text
    assert (await jobs.job_list(course_id=course["id"], limit=5, offset=0))[0] == 1
    # and once its job document is deleted too, it is not found
    await get_db().assignment_jobs.delete_many({})
    assert (await api.get(preview_url)).status_code == 404
