"""The console's upload options in the job service: a job-level due_at for the CSV rows
without one, and confirming a finished dry run (`jobs.job_confirm`) into the real job
from its stored input. A real arq worker on the local Redis (the job_queue fixture)."""

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from bson import ObjectId
from django.core.files.uploadedfile import SimpleUploadedFile

from bench.jobs_users import create_users
from common.errors import Conflict, InvalidInput, NotFound
from courses import jobs
from courses.job_repository import QUEUED, SUCCEEDED
from mongo.client import get_db

FUTURE = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
ROW_DUE = "2032-06-30T17:00:00Z"


async def _users(n: int, prefix: str) -> list[int]:
    return await sync_to_async(create_users)(n, prefix=prefix)


def _csv(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("cohort.csv", text.encode(), content_type="text/csv")


async def _deadlines(course_id: str, ids: list[int]) -> list[str | None]:
    found = []
    for uid in ids:
        doc = await get_db().enrollments.find_one(
            {"course_id": ObjectId(course_id), "user_id": uid}
        )
        found.append(doc and (doc["due_at"] and doc["due_at"].isoformat()[:16]))
    return found


async def test_the_job_due_at_applies_to_rows_without_their_own(
    admin, create_course, job_queue, invariants
):
    # given a CSV whose due_at column is empty on some rows, and one with no such column
    course = await create_course()
    ids = await _users(6, prefix="jobdue")
    with_column = _csv(
        "email,due_at\n"
        f"jobdue0@example.com,{ROW_DUE}\n"
        "JobDue1@example.com,\n"
        "jobdue2@example.com,  \n"
    )
    without = _csv("username\njobdue3\njobdue4\njobdue5\n")
    # when both are uploaded with a due date for the job
    first = await jobs.job_create_from_csv(
        course_id=course["id"], admin_id=admin[0].id, upload=with_column, due_at=FUTURE
    )
    second = await jobs.job_create_from_csv(
        course_id=course["id"], admin_id=admin[0].id, upload=without, due_at=FUTURE
    )
    assert first.due_at == FUTURE
    assert second.due_at == FUTURE
    await job_queue()
    # then a row's own deadline wins and every other row takes the job's
    assert await _deadlines(course["id"], ids) == [
        "2032-06-30T17:00",
        *["2031-03-01T09:00"] * 5,
    ]
    assert await invariants(course["id"], in_order=False) == 6


async def test_a_past_job_due_at_is_refused_and_stores_nothing(admin, create_course, job_queue):
    course = await create_course()
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(InvalidInput, match="Must be in the future"):
        await jobs.job_create_from_csv(
            course_id=course["id"], admin_id=admin[0].id, upload=_csv("user_id\n1\n"), due_at=past
        )
    assert await get_db().assignment_jobs.count_documents({}) == 0
    assert await get_db().assignment_job_chunks.count_documents({}) == 0


async def _dry_run(course_id: str, admin_id: int, text: str, **options):
    job = await jobs.job_create_from_csv(
        course_id=course_id, admin_id=admin_id, upload=_csv(text), dry_run=True, **options
    )
    return job


async def test_a_confirmed_dry_run_assigns_its_stored_input_with_its_options(
    admin, create_course, job_queue, invariants
):
    # given a finished dry run of 10 users (three chunks) on a course of 4 seats, with a
    # due date and override_capacity
    course = await create_course(capacity=4)
    ids = await _users(10, prefix="confirm")
    text = "email\n" + "".join(f"Confirm{i}@Example.com\n" for i in range(10))
    preview = await _dry_run(course["id"], admin[0].id, text, due_at=FUTURE, override_capacity=True)
    await job_queue()
    preview = await jobs.job_get(job_id=preview.id)
    assert preview.status == SUCCEEDED
    assert preview.summary["enrolled"] == 10
    assert await get_db().enrollments.count_documents({}) == 0
    # when it is confirmed
    job = await jobs.job_confirm(job_id=preview.id, admin_id=admin[0].id)
    # then a new, real job has the same input and options, and names the dry run
    assert job.id != preview.id
    assert job.status == QUEUED
    assert (job.dry_run, job.total, job.chunks) == (False, 10, 3)
    assert (job.due_at, job.override_capacity, job.with_identifiers) == (FUTURE, True, True)
    assert job.identifier == "email"
    assert job.preview_job_id == preview.id
    assert (await jobs.job_get(job_id=preview.id)).confirmed_job_id == job.id
    await job_queue()
    done = await jobs.job_get(job_id=job.id)
    assert done.status == SUCCEEDED
    assert done.summary == preview.summary
    assert await _deadlines(course["id"], ids) == ["2031-03-01T09:00"] * 10
    assert await get_db().enrollments.count_documents({"status": "active"}) == 10
    # and the results are those the preview showed, in the file's order
    real = await jobs.job_results_page(job_id=job.id, cursor=(0, 0), limit=20)
    dry = await jobs.job_results_page(job_id=preview.id, cursor=(0, 0), limit=20)
    assert [r["user"] for r in real.results] == [f"Confirm{i}@Example.com" for i in range(10)]
    assert real.results == dry.results
    # and it cannot be confirmed twice
    with pytest.raises(jobs.NotConfirmable, match="confirmed already"):
        await jobs.job_confirm(job_id=preview.id, admin_id=admin[0].id)
    assert await get_db().assignment_jobs.count_documents({}) == 2


async def test_confirm_is_refused_for_what_is_not_a_finished_dry_run(
    admin, create_course, job_queue
):
    course = await create_course()
    await _users(2, prefix="refuse")
    text = "username\nrefuse0\nrefuse1\n"
    # a real job
    real = await jobs.job_create_from_csv(
        course_id=course["id"], admin_id=admin[0].id, upload=_csv(text)
    )
    # a dry run not run yet, and one cancelled
    queued = await _dry_run(course["id"], admin[0].id, text)
    cancelled = await _dry_run(course["id"], admin[0].id, text)
    await jobs.job_cancel(job_id=cancelled.id)
    cases = [
        (real.id, "not a dry run"),
        (queued.id, "not finished yet"),
        (cancelled.id, "cancelled"),
    ]
    for job_id, message in cases:
        with pytest.raises(jobs.NotConfirmable, match=message) as raised:
            await jobs.job_confirm(job_id=job_id, admin_id=admin[0].id)
        assert raised.value.status_code == 409
    with pytest.raises(NotFound):
        await jobs.job_confirm(job_id=str(ObjectId()), admin_id=admin[0].id)
    assert await get_db().assignment_jobs.count_documents({}) == 3


async def test_a_failed_confirmation_can_be_tried_again(api, admin, create_course, job_queue):
    # given a finished dry run whose course is archived before the confirmation
    course = await create_course()
    await _users(3, prefix="again")
    preview = await _dry_run(course["id"], admin[0].id, "username\nagain0\nagain1\nagain2\n")
    await job_queue()
    url = f"/api/courses/{course['id']}/"
    await api.patch(url, json={"status": "archived"}, headers=admin[1])
    # when it is confirmed, it is refused by the course, and nothing is left marked
    with pytest.raises(Conflict, match="archived"):
        await jobs.job_confirm(job_id=preview.id, admin_id=admin[0].id)
    assert (await jobs.job_get(job_id=preview.id)).confirmed_job_id is None
    assert await get_db().assignment_jobs.count_documents({}) == 1
    # then once the course is reopened the same dry run confirms
    await api.patch(url, json={"status": "open"}, headers=admin[1])
    job = await jobs.job_confirm(job_id=preview.id, admin_id=admin[0].id)
    await job_queue()
    assert (await jobs.job_get(job_id=job.id)).summary["enrolled"] == 3


async def test_a_dry_run_whose_due_at_passed_is_not_confirmed(admin, create_course, job_queue):
    course = await create_course()
    await _users(1, prefix="late")
    preview = await _dry_run(
        course["id"],
        admin[0].id,
        "username\nlate0\n",
        due_at=datetime.now(UTC) + timedelta(hours=1),
    )
    await job_queue()
    await get_db().assignment_jobs.update_one(
        {"_id": preview.id}, {"$set": {"due_at": datetime.now(UTC) - timedelta(minutes=1)}}
    )
    with pytest.raises(InvalidInput, match="Must be in the future"):
        await jobs.job_confirm(job_id=preview.id, admin_id=admin[0].id)
    assert (await jobs.job_get(job_id=preview.id)).confirmed_job_id is None
