"""Assignment jobs through the API and a real arq worker on the local Redis (burst mode,
in this process): create (202 + Location), poll, results paging, cancel, bad input,
idempotency, retries. The process-level resume test is tests/reliability/test_jobs_resume.py.
"""

import uuid

import pytest
from asgiref.sync import sync_to_async
from bson import ObjectId

from bench.jobs_users import create_users
from courses import jobs
from courses.job_queue import close_queue_pool, queue_pool
from courses.job_worker import build_worker
from mongo.client import get_db


@pytest.fixture
async def job_queue(settings, mongo_db):
    """A queue of this test's own, and `drain()`: run a burst worker until it is empty."""
    settings.JOB_QUEUE_NAME = f"test-jobs-{uuid.uuid4().hex[:8]}"
    settings.JOB_CHUNK_SIZE = 4

    async def drain() -> None:
        worker = build_worker(burst=True, handle_signals=False)
        try:
            await worker.async_run()
        finally:
            await worker.close()

    yield drain
    pool = await queue_pool()
    await pool.delete(settings.JOB_QUEUE_NAME)
    await close_queue_pool()


def _url(course_id: str) -> str:
    return f"/api/courses/{course_id}/assignment-jobs/"


async def _users(n: int, prefix: str = "cohort", active: bool = True) -> list[int]:
    return await sync_to_async(create_users)(n, prefix=prefix, active=active)


async def _all_results(api, headers, job_id: str, limit: int) -> list[dict]:
    results, url = [], f"/api/assignment-jobs/{job_id}/results/?limit={limit}"
    while url:
        page = await api.get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["results"]) <= limit
        results.extend(body["results"])
        url = body["next"]
    return results


async def _stored(collection: str, job_id: str) -> int:
    return await get_db()[collection].count_documents({"job_id": job_id})


async def test_json_job_is_queued_then_run_by_a_worker(
    api, admin, create_course, job_queue, invariants
):
    # given ten users, one of them already enrolled, and an unknown id
    course = await create_course()
    ids = await _users(10)
    first = await api.post(
        f"/api/courses/{course['id']}/assign/", json={"user_id": ids[0]}, headers=admin[1]
    )
    assert first.status_code == 201
    # when an admin submits a job
    response = await api.post(
        _url(course["id"]), json={"user_ids": [*ids, 999_999]}, headers=admin[1]
    )
    # then it is queued: 202, Location, the JOB shape
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"http://testserver/api/assignment-jobs/{job['id']}/"
    assert job["status"] == "queued"
    assert job["total"] == 11
    assert job["processed"] == 0
    assert job["finished_at"] is None
    assert job["error"] is None
    assert job["eta_seconds"] is None
    assert await _stored("assignment_job_chunks", job["id"]) == 3  # chunks of 4
    # when a worker drains the queue
    await job_queue()
    # then the job succeeded with the bulk path's summary
    polled = await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])
    assert polled.status_code == 200
    done = polled.json()
    assert done["status"] == "succeeded"
    assert done["processed"] == 11
    assert done["summary"] == {
        "requested": 11,
        "enrolled": 9,
        "already_enrolled": 1,
        "not_found": 1,
        "inactive": 0,
        "waitlisted": 0,
        "duplicates_in_request": 0,
    }
    assert done["finished_at"] is not None
    assert await invariants(course["id"], in_order=False) == 10
    # and the results page through every user in input order
    results = await _all_results(api, admin[1], job["id"], limit=3)
    assert [r["user_id"] for r in results] == [*ids, 999_999]
    assert results[0]["status"] == "already_enrolled"
    assert {r["status"] for r in results[1:10]} == {"enrolled"}
    assert results[10]["status"] == "not_found"


async def test_csv_job_streams_the_user_id_column(api, admin, create_course, job_queue, invariants):
    course = await create_course()
    ids = await _users(9, prefix="csv")
    inactive = await _users(1, prefix="gone", active=False)
    lines = ["name,user_id"] + [f"n{i},{uid}" for i, uid in enumerate([*ids, *inactive])]
    body = "\ufeff" + "\r\n".join(lines[:5]) + "\r\n\r\n" + "\n".join(lines[5:]) + "\n"
    response = await api.post(
        _url(course["id"]),
        content=body.encode(),
        headers={**admin[1], "Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["total"] == 10
    await job_queue()
    job = (await api.get(f"/api/assignment-jobs/{response.json()['id']}/", headers=admin[1])).json()
    assert job["status"] == "succeeded"
    assert job["summary"]["enrolled"] == 9
    assert job["summary"]["inactive"] == 1
    assert await invariants(course["id"], in_order=False) == 9


PAST = "2020-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"name,dept\nx,y\n", "text/csv", "CSV line 1: The header row must name an identifier"),
        (b"user_id,User_ID\n1,2\n", "text/csv", "Column user_id appears twice"),
        (b"user_id\n12\nabc\n", "text/csv", "CSV line 3: user_id is not a positive integer"),
        (b"user_id\n12\n\xff\xfe\n", "text/csv", "CSV line 3 is not UTF-8"),
        (b"user_id\n0\n", "text/csv", "CSV line 2: user_id is not a positive integer"),
        (b'user_id\n"12\n', "text/csv", "cannot be parsed"),
        (b"", "text/csv", "The CSV is empty"),
        (b"user_id\n\n", "text/csv", "names no user"),
        (
            f"email,due_at\na@example.com,\nb@example.com,{PAST}\n".encode(),
            "text/csv",
            "CSV line 3: due_at: Must be in the future.",
        ),
        (b"email,due_at\na@example.com,soon\n", "text/csv", "CSV line 2: due_at:"),
        (b"email,username\na@x.org,\nb@x.org,bob\n", "text/csv", "CSV line 3: give one"),
        (b"email,name\na@x.org,A\n,B\n", "text/csv", "CSV line 3: empty identifier"),
        (b'{"user_ids": [1, "2"]}', "application/json", "Item 1 is not a valid user id"),
        (b'{"user_ids": [true]}', "application/json", "Item 0 is not a valid user id"),
        (b'{"user_ids": []}', "application/json", "may not be empty"),
        (b'{"user_ids": [1], "x": 1}', "application/json", "Unexpected field"),
        (b'{"usernames": ["a", " "]}', "application/json", "Item 1 is not a non-empty string"),
        (b'{"emails": ["a@x.org"], "user_ids": [1]}', "application/json", "exactly one of"),
        (b"{}", "application/json", "exactly one of"),
        (
            f'{{"emails": ["a@x.org"], "due_at": "{PAST}"}}'.encode(),
            "application/json",
            "Must be in the future",
        ),
        (b'{"user_ids": [1], "dry_run": "yes"}', "application/json", "dry_run"),
    ],
)
async def test_bad_input_is_a_400_and_writes_nothing(
    api, admin, create_course, job_queue, settings, body, content_type, message
):
    # given a course (and chunks of 1, so a bad line comes after stored chunks)
    settings.JOB_CHUNK_SIZE = 1
    course = await create_course()
    # when the input cannot be read
    response = await api.post(
        _url(course["id"]), content=body, headers={**admin[1], "Content-Type": content_type}
    )
    # then 400 naming the problem, and no job, chunk or queue entry exists
    assert response.status_code == 400, response.text
    assert message in response.text
    db = get_db()
    assert await db.assignment_jobs.count_documents({}) == 0
    assert await db.assignment_job_chunks.count_documents({}) == 0
    assert await (await queue_pool()).zcard(settings.JOB_QUEUE_NAME) == 0


async def test_too_many_users_is_a_400(api, admin, create_course, job_queue, settings):
    settings.JOB_MAX_USERS = 5
    course = await create_course()
    csv_body = "user_id\n" + "\n".join(str(i) for i in range(1, 7)) + "\n"
    as_csv = await api.post(
        _url(course["id"]), content=csv_body, headers={**admin[1], "Content-Type": "text/csv"}
    )
    as_json = await api.post(
        _url(course["id"]), json={"user_ids": list(range(1, 7))}, headers=admin[1]
    )
    assert as_csv.status_code == as_json.status_code == 400
    assert "At most 5" in as_csv.text
    assert "At most 5" in as_json.text
    assert await get_db().assignment_job_chunks.count_documents({}) == 0


async def test_unsupported_media_type_and_oversized_json(
    api, admin, create_course, job_queue, settings
):
    course = await create_course()
    form = await api.post(_url(course["id"]), data={"user_ids": "1"}, headers=admin[1])
    assert form.status_code == 415
    settings.JOB_JSON_MAX_BYTES = 20
    big = await api.post(
        _url(course["id"]), json={"user_ids": [1, 2, 3, 4, 5, 6]}, headers=admin[1]
    )
    assert big.status_code == 413
    assert big.json()["code"] == "too_large"
    assert await get_db().assignment_jobs.count_documents({}) == 0


async def test_unknown_and_archived_courses(api, admin, create_course, job_queue):
    missing = await api.post(_url(str(ObjectId())), json={"user_ids": [1]}, headers=admin[1])
    assert missing.status_code == 404
    course = await create_course()
    archived = await api.patch(
        f"/api/courses/{course['id']}/", json={"status": "archived"}, headers=admin[1]
    )
    assert archived.status_code == 200
    refused = await api.post(_url(course["id"]), json={"user_ids": [1]}, headers=admin[1])
    assert refused.status_code == 409
    assert refused.json()["code"] == "course_archived"
    assert await get_db().assignment_jobs.count_documents({}) == 0


async def test_course_archived_while_queued_fails_the_job(api, admin, create_course, job_queue):
    course = await create_course()
    ids = await _users(6)
    job = (await api.post(_url(course["id"]), json={"user_ids": ids}, headers=admin[1])).json()
    await api.patch(f"/api/courses/{course['id']}/", json={"status": "archived"}, headers=admin[1])
    await job_queue()
    polled = (await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])).json()
    assert polled["status"] == "failed"
    assert "archived" in polled["error"]
    assert polled["processed"] == 0
    assert await get_db().enrollments.count_documents({}) == 0


async def test_cancel_stops_later_chunks(api, admin, create_course, job_queue, invariants):
    # given a queued job of three chunks
    course = await create_course()
    ids = await _users(12)
    job = (await api.post(_url(course["id"]), json={"user_ids": ids}, headers=admin[1])).json()
    # when its first chunk runs, then it is cancelled
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=0) == "done"
    cancelled = await api.delete(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])
    # then it is cancelled with the counts so far, and no later chunk runs
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["processed"] == 4
    assert body["finished_at"] is not None
    await job_queue()
    after = (await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])).json()
    assert after == {**body, "eta_seconds": None}
    assert await invariants(course["id"], in_order=False) == 4
    # and a repeat answers the same; a finished job cannot be cancelled
    again = await api.delete(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    other = (
        await api.post(_url(course["id"]), json={"user_ids": ids[:2]}, headers=admin[1])
    ).json()
    await job_queue()
    finished = await api.delete(f"/api/assignment-jobs/{other['id']}/", headers=admin[1])
    assert finished.status_code == 409
    assert finished.json()["code"] == "job_finished"


async def test_a_chunk_run_again_counts_nobody_twice(
    api, admin, create_course, job_queue, invariants
):
    # given a chunk whose first attempt enrolled and counted its users, then "crashed"
    # before it was marked done (its lease left to expire)
    course = await create_course()
    ids = await _users(4)
    job = (await api.post(_url(course["id"]), json={"user_ids": ids}, headers=admin[1])).json()
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=0) == "done"
    await get_db().assignment_job_chunks.update_one(
        {"job_id": job["id"], "chunk": 0}, {"$set": {"done": False, "lease_until": None}}
    )
    await get_db().assignment_jobs.update_one(
        {"_id": job["id"]}, {"$set": {"status": "running", "finished_at": None}}
    )
    # when the chunk runs again
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=0) == "done"
    # then the users are still counted once, reported enrolled, and the job counted once
    assert await invariants(course["id"], in_order=False) == 4
    polled = (await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])).json()
    assert polled["processed"] == 4
    assert polled["summary"]["enrolled"] == 4
    results = await _all_results(api, admin[1], job["id"], limit=10)
    assert {r["status"] for r in results} == {"enrolled"}


async def test_an_unapplied_attempt_is_adopted_by_the_rerun(
    api, admin, create_course, job_queue, invariants
):
    # given a chunk whose first attempt inserted its enrollments under its operation and
    # died before the course update (simulated: the insert alone)
    from courses import membership, repository
    from courses.documents import Enrollment

    course = await create_course()
    ids = await _users(4)
    job = (await api.post(_url(course["id"]), json={"user_ids": ids}, headers=admin[1])).json()
    db = get_db()
    chunk = await db.assignment_job_chunks.find_one({"job_id": job["id"], "chunk": 0})
    dead_op = membership.new_op(bulk=True)
    await db.assignment_job_chunks.update_one({"_id": chunk["_id"]}, {"$push": {"ops": dead_op}})
    await repository.enrollment_insert_many(
        [
            Enrollment(
                id=repository.new_id(),
                user_id=uid,
                username=f"cohort{i}",
                course_id=course["id"],
                status="active",
                enrolled_at=repository.now(),
                source="admin",
                assigned_by=admin[0].id,
                op=dead_op,
            )
            for i, uid in enumerate(ids[:3])
        ]
    )
    # when the chunk runs
    await job_queue()
    # then all four are counted exactly once, and reported as enrolled by this job
    assert await invariants(course["id"], in_order=False) == 4
    polled = (await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])).json()
    assert polled["status"] == "succeeded"
    assert polled["summary"]["enrolled"] == 4


async def test_idempotency_key_answers_the_same_job(api, admin, create_course, job_queue):
    course = await create_course()
    ids = await _users(5)
    body = ("user_id\n" + "\n".join(map(str, ids)) + "\n").encode()
    headers = {**admin[1], "Content-Type": "text/csv", "Idempotency-Key": "cohort-2026"}
    first = await api.post(_url(course["id"]), content=body, headers=headers)
    again = await api.post(_url(course["id"]), content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await api.post(_url(course["id"]), content=body + b"1\n", headers=headers)
    assert other.status_code == 422
    assert await get_db().assignment_jobs.count_documents({}) == 1


async def test_results_cursor_and_limit_validation(api, admin, create_course, job_queue):
    course = await create_course()
    job = (await api.post(_url(course["id"]), json={"user_ids": [5, 6]}, headers=admin[1])).json()
    base = f"/api/assignment-jobs/{job['id']}/results/"
    assert (await api.get(base, headers=admin[1])).json() == {"next": None, "results": []}
    for query in ("?cursor=x", "?cursor=1", "?limit=0", "?limit=5001", "?limit=a"):
        response = await api.get(base + query, headers=admin[1])
        assert response.status_code == 400, query
    missing = await api.get(f"/api/assignment-jobs/{ObjectId()}/results/", headers=admin[1])
    assert missing.status_code == 404
    assert (
        await api.get(f"/api/assignment-jobs/{ObjectId()}/", headers=admin[1])
    ).status_code == 404


async def test_queue_down_is_a_503_and_the_job_says_why(
    api, admin, create_course, job_queue, settings
):
    course = await create_course()
    settings.JOB_QUEUE_URL = "redis://127.0.0.1:1/0"
    await close_queue_pool()
    response = await api.post(_url(course["id"]), json={"user_ids": [1]}, headers=admin[1])
    assert response.status_code == 503
    job = await get_db().assignment_jobs.find_one({})
    assert job["status"] == "failed"
    assert "queue is unavailable" in job["error"]
    settings.JOB_QUEUE_URL = "redis://127.0.0.1:6379/0"
    await close_queue_pool()


async def test_mongodb_down_retries_with_backoff(transactional_db, job_queue, monkeypatch):
    # given a chunk whose run finds MongoDB down
    from common.errors import ServiceUnavailable
    from courses import job_worker

    async def down(**kwargs):
        raise ServiceUnavailable("MongoDB is unavailable, try again shortly.")

    monkeypatch.setattr(jobs, "job_chunk_run", down)
    # when the task runs, it asks the queue to retry later, with growing delays
    with pytest.raises(job_worker.Retry) as first:
        await job_worker.assignment_job_chunk({"job_try": 1}, "j", 0)
    with pytest.raises(job_worker.Retry) as third:
        await job_worker.assignment_job_chunk({"job_try": 3}, "j", 0)
    assert first.value.defer_score < third.value.defer_score
    assert job_worker.backoff_seconds(10) == 60


@pytest.mark.parametrize("key", [None, "big-upload"])
async def test_a_csv_larger_than_the_in_memory_limit_is_read_as_a_stream(
    api, admin, create_course, job_queue, settings, key
):
    # given a body far over DATA_UPLOAD_MAX_MEMORY_SIZE (what `request.body` would refuse)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16
    course = await create_course()
    ids = await _users(40)
    body = ("user_id\n" + "\n".join(map(str, ids)) + "\n").encode()
    assert len(body) > 4 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    headers = {**admin[1], "Content-Type": "text/csv"}
    if key:
        headers["Idempotency-Key"] = key
    # when it is posted (with or without a key: the fingerprint streams it too)
    response = await api.post(_url(course["id"]), content=body, headers=headers)
    # then every line was read
    assert response.status_code == 202, response.text
    assert response.json()["total"] == 40
    if key:
        replay = await api.post(_url(course["id"]), content=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == response.json()["id"]
