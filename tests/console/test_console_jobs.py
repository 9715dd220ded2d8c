"""The console's upload jobs: a CSV upload starts an assignment job (courses.jobs), its page
shows the progress and, once a real arq worker (burst, local Redis) has run it, the
per-user results, paged, and their CSV; cancel; bad files; permissions; empty states."""

import csv
import io
import re

from asgiref.sync import sync_to_async

from bench.jobs_users import create_users
from courses import jobs
from tests.console.conftest import csrf_from


async def _upload(
    api, course_id: str, body: bytes, name: str = "cohort.csv", action: str = "start", **fields
):
    """POST the upload form: "start" (Upload and start) or "preview"; `fields` are the
    form's others (due_at, override_capacity)."""
    new = f"/console/manage/courses/{course_id}/jobs/new/"
    token = csrf_from((await api.get(new)).text)
    return await api.post(
        new,
        data={"csrfmiddlewaretoken": token, "action": action, **fields},
        files={"file": (name, body, "text/csv")},
    )


def _statuses(html: str) -> list[str]:
    return re.findall(r'data-status="([a-z_]+)"', html)


async def test_an_uploaded_csv_runs_as_a_job_with_progress_results_and_csv(
    api, console_as, create_course, job_queue
):
    course = await create_course(capacity=8)
    await console_as(is_staff=True)
    ids = await sync_to_async(create_users)(10, prefix="upload")
    body = ("user_id,name\n" + "".join(f"{uid},n{uid}\n" for uid in ids) + "999999\n").encode()
    created = await _upload(api, course["id"], body)
    assert created.status_code == 302, created.text[:500]
    job_url = created.headers["Location"]
    assert re.fullmatch(rf"/console/manage/courses/{course['id']}/jobs/[0-9a-f]{{24}}/", job_url)
    # Queued: progress, a cancel button, the live script, a refresh link; no results yet.
    queued = (await api.get(job_url)).text
    assert "Job started: 11 users from cohort.csv." in queued
    assert 'data-job-status="queued"' in queued
    assert 'max="11" value="0"' in queued
    assert "Cancel job" in queued
    assert "Refresh" in queued
    assert "console/job.js" in queued
    assert "Download results CSV" not in queued
    progress = await api.get(f"{job_url}progress/")
    assert progress.headers["X-Job-Status"] == "queued"
    assert progress.headers["Cache-Control"] == "no-store"
    assert "<html" not in progress.text
    assert 'value="0"' in progress.text
    # when the worker runs it
    await job_queue()
    done = await api.get(f"{job_url}progress/")
    assert done.headers["X-Job-Status"] == "succeeded"
    page = (await api.get(job_url)).text
    assert 'max="11" value="11"' in page
    assert re.search(r'data-summary="enrolled">8<', page)
    assert re.search(r'data-summary="waitlisted">2<', page)
    assert re.search(r'data-summary="not_found">1<', page)
    assert "Cancel job" not in page
    assert "console/job.js" not in page
    assert _statuses(page) == ["enrolled"] * 8 + ["waitlisted"] * 2 + ["not_found"]
    # the results as CSV, every row, with usernames
    download = await api.get(f"{job_url}results.csv")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    # (as assign-multiple reports a CSV: "user" as sent, "user_id" resolved or empty)
    assert [int(r["user"]) for r in rows] == [*ids, 999999]
    assert [r["user_id"] for r in rows] == [*map(str, ids), ""]
    assert rows[0]["username"] == "upload0"
    assert rows[-1]["username"] == ""
    assert [r["status"] for r in rows] == _statuses(page)
    # and the course's job lists show it
    listed = (await api.get(f"/console/manage/courses/{course['id']}/jobs/")).text
    assert job_url in listed
    assert "Succeeded" in listed
    history = (await api.get(f"/console/manage/courses/{course['id']}/assignments/")).text
    assert job_url in history


async def test_results_are_paged_with_a_cursor(
    api, console_as, create_course, job_queue, settings, monkeypatch
):
    from console import job_views

    monkeypatch.setattr(job_views, "RESULTS_PER_PAGE", 3)
    monkeypatch.setattr(job_views, "CSV_PAGE", 5)  # the CSV streams in several reads
    course = await create_course()
    await console_as(is_staff=True)
    ids = await sync_to_async(create_users)(7, prefix="paged")
    created = await _upload(api, course["id"], ("user_id\n" + "\n".join(map(str, ids))).encode())
    job_url = created.headers["Location"]
    await job_queue()
    seen, url = [], job_url
    while True:
        html = (await api.get(url)).text
        seen += [int(v) for v in re.findall(r'<td class="num">(\d+)</td>', html)]
        found = re.search(r'href="\?cursor=([0-9.]+)" rel="next"', html)
        if not found:
            break
        url = f"{job_url}?cursor={found.group(1)}"
    assert seen == ids
    assert "First page" in html
    rows = list(csv.DictReader(io.StringIO((await api.get(f"{job_url}results.csv")).text)))
    assert [int(r["user_id"]) for r in rows] == ids
    # A cursor that is not one shows the first page.
    assert (await api.get(f"{job_url}?cursor=x")).status_code == 200


async def test_a_bad_file_is_refused_with_the_services_message_and_no_job(
    api, console_as, create_course, job_queue
):
    course = await create_course()
    await console_as(is_staff=True)
    for body, message in [
        (b"name\nx\n", "CSV line 1: The header row must name an identifier column"),
        (b"user_id\n12\nabc\n", "CSV line 3: user_id is not a positive integer."),
        (b"email,due_at\nx@example.com,2020-01-01T00:00:00Z\n", "CSV line 2: due_at: Must be"),
        (b"", "The CSV is empty"),
        (b"user_id\n\n", "The input names no user."),
    ]:
        refused = await _upload(api, course["id"], body, name="bad.csv")
        assert refused.status_code == 400
        assert f"bad.csv: {message}" in refused.text
    new = f"/console/manage/courses/{course['id']}/jobs/new/"
    token = csrf_from((await api.get(new)).text)
    missing = await api.post(new, data={"csrfmiddlewaretoken": token})
    assert missing.status_code == 400
    assert "Choose a CSV file to upload." in missing.text
    assert (await jobs.job_list(course_id=course["id"], limit=5, offset=0))[0] == 0
    empty = (await api.get(f"/console/manage/courses/{course['id']}/jobs/")).text
    assert "No upload jobs yet" in empty


async def test_an_archived_course_takes_no_upload(api, console_as, create_course, job_queue):
    course = await create_course(status="archived")
    await console_as(is_staff=True)
    refused = await _upload(api, course["id"], b"user_id\n1\n")
    assert refused.status_code == 400
    assert "archived" in refused.text
    assert (await jobs.job_list(course_id=course["id"], limit=5, offset=0))[0] == 0


async def test_cancel_a_queued_job_then_refuse_a_second_cancel_of_an_ended_one(
    api, console_as, create_course, job_queue, make_user
):
    course = await create_course()
    await console_as(is_staff=True)
    user = await make_user()
    job_url = (await _upload(api, course["id"], f"user_id\n{user.id}\n".encode())).headers[
        "Location"
    ]
    token = csrf_from((await api.get(job_url)).text)
    cancelled = await api.post(f"{job_url}cancel/", data={"csrfmiddlewaretoken": token})
    assert cancelled.status_code == 302
    page = (await api.get(job_url)).text
    assert "Job cancelled" in page
    assert 'data-job-status="cancelled"' in page
    assert "No results" in page  # nothing was processed
    await job_queue()  # the worker skips the cancelled job's chunk
    assert (await jobs.job_get(job_id=job_url.split("/")[-2])).processed == 0
    # A finished job cannot be cancelled: the page says so.
    second = await _upload(api, course["id"], f"user_id\n{user.id}\n".encode())
    await job_queue()
    token = csrf_from((await api.get(second.headers["Location"])).text)
    await api.post(f"{second.headers['Location']}cancel/", data={"csrfmiddlewaretoken": token})
    assert "The job has finished" in (await api.get(second.headers["Location"])).text


async def test_a_job_is_found_under_its_own_course_only_and_admins_only(
    api, console_as, create_course, job_queue, make_user
):
    course, other = await create_course(), await create_course()
    admin = await console_as(is_staff=True)
    user = await make_user()
    job_url = (await _upload(api, course["id"], f"user_id\n{user.id}\n".encode())).headers[
        "Location"
    ]
    job_id = job_url.split("/")[-2]
    elsewhere = f"/console/manage/courses/{other['id']}/jobs/{job_id}/"
    for suffix in ("", "progress/", "results.csv"):
        assert (await api.get(elsewhere + suffix)).status_code == 404
    unknown = f"/console/manage/courses/{course['id']}/jobs/{course['id']}/"
    assert (await api.get(unknown)).status_code == 404
    assert admin.is_staff
    token = csrf_from((await api.get(job_url)).text)
    await api.post("/console/logout/", data={"csrfmiddlewaretoken": token})
    await console_as()  # a learner
    for suffix in ("", "progress/", "results.csv"):
        assert (await api.get(job_url + suffix)).status_code == 403
    assert (await api.get(f"/console/manage/courses/{course['id']}/jobs/new/")).status_code == 403


def test_the_upload_has_the_job_body_limit_and_nothing_else_does(settings):
    from asgi_app.limits import body_limit_for

    course = "65f0c0ffee0000000000abcd"
    upload = f"/console/manage/courses/{course}/jobs/new/"
    assert body_limit_for(upload) == settings.MAX_JOB_BODY_BYTES
    assert body_limit_for(f"/console/manage/courses/{course}/jobs/") == settings.MAX_BODY_BYTES
    assert body_limit_for(f"/console/manage/courses/{course}/assign/") == settings.MAX_BODY_BYTES
