"""Retention of assignment jobs (JOB_RETENTION_DAYS): every document of a job carries the
job's `expires_at` and each of the four collections has a TTL index on it. The stand-in
records TTL indexes but never expires documents, so "expired" is what MongoDB's TTL
monitor would do: the documents past `expires_at` deleted, collection by collection (and
before it runs, a job past `expires_at` reads as unknown). A real arq worker on the local
Redis (the job_queue fixture, chunks of 4) runs the jobs."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from bench.jobs_users import create_users
from common.errors import NotFound
from courses import jobs
from courses.job_repository import SUCCEEDED
from mongo.client import cursor, get_db
from mongo.indexes import ASSIGNMENT_JOBS, JOB_CHUNKS, JOB_RESULTS, JOB_USERS
from tests.api.test_lifespan_and_commands import _call

COLLECTIONS = (ASSIGNMENT_JOBS, JOB_CHUNKS, JOB_RESULTS, JOB_USERS)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def _users(n: int, prefix: str) -> list[int]:
    return await sync_to_async(create_users)(n, prefix=prefix)


def _csv(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("cohort.csv", text.encode(), content_type="text/csv")


async def _documents(job_id: str) -> dict[str, list[dict]]:
    """Every stored document of a job, by collection."""
    found = {}
    for name in COLLECTIONS:
        query = {"_id": job_id} if name == ASSIGNMENT_JOBS else {"job_id": job_id}
        found[name] = [doc async for doc in get_db()[name].find(query)]
    return found


async def _ttl_pass(moment: datetime, collections=COLLECTIONS) -> None:
    """What MongoDB's TTL monitor does (expireAfterSeconds 0): delete what is past."""
    for name in collections:
        await get_db()[name].delete_many({"expires_at": {"$lte": moment}})


async def _age(job_id: str, by: timedelta) -> None:
    """Move a job's documents' expiry back by `by`, as if that much time had passed."""
    for name in COLLECTIONS:
        query = {"_id": job_id} if name == ASSIGNMENT_JOBS else {"job_id": job_id}
        async for doc in get_db()[name].find(query, {"expires_at": 1}):
            await get_db()[name].update_one(
                {"_id": doc["_id"]}, {"$set": {"expires_at": doc["expires_at"] - by}}
            )


async def test_each_job_collection_has_a_ttl_index_on_expires_at(mongo_db):
    for name in COLLECTIONS:
        indexes = {i["name"]: i async for i in await cursor(mongo_db[name].list_indexes())}
        assert indexes["expires_at_ttl"]["key"] == {"expires_at": 1}, name
        assert indexes["expires_at_ttl"]["expireAfterSeconds"] == 0, name


async def test_every_document_of_a_job_expires_with_the_job(
    api, admin, create_course, job_queue, settings
):
    # given a retention of 7 days, and a job of 10 users in three chunks naming one
    # user in two chunks (claims in assignment_job_users, one of them clashing)
    settings.JOB_RETENTION_DAYS = 7
    course = await create_course()
    ids = await _users(10, prefix="retain")
    response = await api.post(
        f"/api/courses/{course['id']}/assignment-jobs/",
        json={"user_ids": [*ids, ids[0]]},
        headers=admin[1],
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    # when a worker runs it
    await job_queue()
    # then the job, its 3 chunks, 3 result documents and 10 claims carry one expires_at:
    # the job's creation + 7 days
    stored = await _documents(job_id)
    job = stored[ASSIGNMENT_JOBS][0]
    assert job["status"] == SUCCEEDED
    assert job["summary"]["duplicates_in_request"] == 1
    assert job["expires_at"] - job["created_at"] == timedelta(days=7)
    counts = {name: len(docs) for name, docs in stored.items()}
    assert counts == {ASSIGNMENT_JOBS: 1, JOB_CHUNKS: 3, JOB_RESULTS: 3, JOB_USERS: 10}
    assert {doc["expires_at"] for docs in stored.values() for doc in docs} == {job["expires_at"]}


async def test_an_expired_job_is_an_unknown_job(api, admin, create_course, job_queue):
    # given a finished job
    course = await create_course()
    ids = await _users(5, prefix="expire")
    created = await api.post(
        f"/api/courses/{course['id']}/assignment-jobs/", json={"user_ids": ids}, headers=admin[1]
    )
    job_id = created.json()["id"]
    await job_queue()
    url = f"/api/assignment-jobs/{job_id}/"
    assert (await api.get(url, headers=admin[1])).status_code == 200
    # when its retention has passed, before the TTL monitor has run
    await _age(job_id, timedelta(days=31))
    # then it answers as an unknown job: the job, its results, a cancel
    for answer in (
        await api.get(url, headers=admin[1]),
        await api.get(f"{url}results/", headers=admin[1]),
        await api.delete(url, headers=admin[1]),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["detail"] == jobs.JOB_NOT_FOUND
    # and once the monitor ran nothing of it is left, and it still answers 404
    await _ttl_pass(datetime.now(UTC))
    assert {name: len(docs) for name, docs in (await _documents(job_id)).items()} == dict.fromkeys(
        COLLECTIONS, 0
    )
    assert (await api.get(url, headers=admin[1])).status_code == 404
    # while the course's enrollments, which are not the job's, stay
    assert await get_db().enrollments.count_documents({}) == 5


async def test_a_preview_confirmed_after_its_expiry_is_refused_clearly(
    admin, create_course, job_queue
):
    # given two finished dry runs of 10 users (3 chunks each)
    course = await create_course()
    await _users(10, prefix="stale")
    text = "username\n" + "".join(f"stale{i}\n" for i in range(10))
    gone, partly = [
        await jobs.job_create_from_csv(
            course_id=course["id"], admin_id=admin[0].id, upload=_csv(text), dry_run=True
        )
        for _ in range(2)
    ]
    await job_queue()
    # when the first is past its retention: it is not found (404)
    await _age(gone.id, timedelta(days=31))
    with pytest.raises(NotFound, match=jobs.JOB_NOT_FOUND):
        await jobs.job_confirm(job_id=gone.id, admin_id=admin[0].id)
    # when the TTL monitor has deleted one chunk of the second but not (yet) its job
    await get_db()[JOB_CHUNKS].delete_one({"job_id": partly.id, "chunk": 1})
    # then confirming it is a 409 that says the input expired, and writes nothing
    with pytest.raises(jobs.NotConfirmable, match="stored input has expired") as refused:
        await jobs.job_confirm(job_id=partly.id, admin_id=admin[0].id)
    assert refused.value.status_code == 409
    assert await get_db()[ASSIGNMENT_JOBS].count_documents({}) == 2
    assert (
        await get_db()[JOB_CHUNKS].count_documents({"job_id": {"$nin": [gone.id, partly.id]}}) == 0
    )
    assert (await jobs.job_get(job_id=partly.id)).confirmed_job_id is None
    # and when every chunk is gone it is refused the same way (not "names no user")
    await get_db()[JOB_CHUNKS].delete_many({"job_id": partly.id})
    with pytest.raises(jobs.NotConfirmable, match="stored input has expired"):
        await jobs.job_confirm(job_id=partly.id, admin_id=admin[0].id)
    assert await get_db().enrollments.count_documents({}) == 0


async def test_a_confirmed_preview_makes_a_job_of_its_own_retention(
    admin, create_course, job_queue
):
    course = await create_course()
    await _users(5, prefix="later")
    text = "username\n" + "".join(f"later{i}\n" for i in range(5))
    preview = await jobs.job_create_from_csv(
        course_id=course["id"], admin_id=admin[0].id, upload=_csv(text), dry_run=True
    )
    await job_queue()
    # a day later (the preview expires a day sooner than a new job would)
    await _age(preview.id, timedelta(days=1))
    job = await jobs.job_confirm(job_id=preview.id, admin_id=admin[0].id)
    await job_queue()
    stored = await _documents(job.id)
    assert stored[ASSIGNMENT_JOBS][0]["status"] == SUCCEEDED
    assert job.expires_at - job.created_at == timedelta(days=30)
    expiries = {doc["expires_at"] for docs in stored.values() for doc in docs}
    assert expiries == {job.expires_at}
    # and the preview expiring afterwards leaves the real job whole
    await _ttl_pass(datetime.now(UTC) + timedelta(days=29, hours=12))
    assert await get_db()[ASSIGNMENT_JOBS].count_documents({"_id": preview.id}) == 0
    assert (await jobs.job_get(job_id=job.id)).summary["enrolled"] == 5


async def test_backfill_gives_older_documents_their_job_s_expiry(admin, create_course, job_queue):
    # given a finished job and the chunks of a creation that crashed before its job was
    # stored, all written before retention existed (no expires_at)
    course = await create_course()
    await _users(6, prefix="older")
    text = "username\n" + "".join(f"older{i}\n" for i in range(6))
    job = await jobs.job_create_from_csv(
        course_id=course["id"], admin_id=admin[0].id, upload=_csv(text)
    )
    await job_queue()
    await get_db()[JOB_CHUNKS].insert_one({"_id": "crashed:0", "job_id": "crashed", "chunk": 0})
    for name in COLLECTIONS:
        await get_db()[name].update_many({}, {"$unset": {"expires_at": ""}})
    # when the backfill runs
    out = await _call("backfill_job_expiry")
    # then the job's documents expire 30 days after its creation, the orphan 30 days
    # from now
    assert "1 job(s) and 1 orphan" in out
    stored = await _documents(job.id)
    assert sum(len(docs) for docs in stored.values()) == 1 + 2 + 2 + 6
    assert {doc["expires_at"] for docs in stored.values() for doc in docs} == {
        job.created_at + timedelta(days=30)
    }
    orphan = await get_db()[JOB_CHUNKS].find_one({"_id": "crashed:0"})
    assert orphan["expires_at"] - datetime.now(UTC) > timedelta(days=29)
    # and a second run changes nothing
    assert "0 job(s) and 0 orphan" in await _call("backfill_job_expiry")


def test_a_retention_below_one_day_is_refused_at_startup():
    env = {**os.environ, "DEBUG": "1", "JOB_RETENTION_DAYS": "0"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT_ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "asgi_app.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "JOB_RETENTION_DAYS must be at least 1" in done.stderr


async def test_a_job_stored_before_retention_writes_what_backfill_would_set(
    api, admin, create_course, job_queue
):
    # given a queued job whose document has no expires_at (stored by the previous version)
    course = await create_course()
    ids = await _users(5, prefix="rolling")
    created = await api.post(
        f"/api/courses/{course['id']}/assignment-jobs/", json={"user_ids": ids}, headers=admin[1]
    )
    job_id = created.json()["id"]
    await get_db()[ASSIGNMENT_JOBS].update_one({"_id": job_id}, {"$unset": {"expires_at": ""}})
    # when a worker runs it, its results and claims expire at its creation + the retention
    await job_queue()
    stored = await _documents(job_id)
    expected = stored[ASSIGNMENT_JOBS][0]["created_at"] + timedelta(days=30)
    assert stored[ASSIGNMENT_JOBS][0]["status"] == SUCCEEDED
    for name in (JOB_RESULTS, JOB_USERS):
        assert {doc["expires_at"] for doc in stored[name]} == {expected}, name
