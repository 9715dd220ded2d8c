"""Assignment jobs through the API and a real arq worker on the local Redis (burst mode,
in this process): create (202 + Location), poll, results paging, cancel, bad input,
idempotency, retries. The process-level resume test is tests/reliability/test_jobs_resume.py.
"""

import pytest
from asgiref.sync import sync_to_async
from bson import ObjectId

from bench.jobs_users import create_users
from courses import jobs
from courses.job_queue import close_queue_pool, queue_pool
from mongo.client import get_db


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


# --- assign-multiple's bodies (API.md "Admin assignment, version 2") ---------------------

FUTURE = "2031-03-01T09:00:00Z"
LATER = "2032-06-30T17:00:00Z"


async def _run(api, admin, job_queue, job: dict) -> dict:
    await job_queue()
    polled = await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])
    assert polled.status_code == 200
    return polled.json()


async def _enrollment(course_id: str, user_id: int) -> dict | None:
    return await get_db().enrollments.find_one(
        {"course_id": ObjectId(course_id), "user_id": user_id}
    )


async def test_usernames_job_resolves_per_chunk_and_reports_the_user(
    api, admin, create_course, job_queue, invariants
):
    # given six users named by username, in other cases, one unknown (chunks of 4)
    course = await create_course()
    ids = await _users(6, prefix="Name")
    names = ["NAME0", "name1", "Name2", "nAmE3", "nobody-here", "name4", "NAME5"]
    # when a job names them with a due_at
    response = await api.post(
        _url(course["id"]), json={"usernames": names, "due_at": FUTURE}, headers=admin[1]
    )
    assert response.status_code == 202, response.text
    assert response.json()["total"] == 7
    assert response.json()["dry_run"] is False
    done = await _run(api, admin, job_queue, response.json())
    # then everyone known is enrolled with the deadline, and each result says who was sent
    assert done["status"] == "succeeded"
    assert done["summary"]["enrolled"] == 6
    assert done["summary"]["not_found"] == 1
    results = await _all_results(api, admin[1], done["id"], limit=2)
    assert [r["user"] for r in results] == names
    assert [r["user_id"] for r in results] == [*ids[:4], None, *ids[4:]]
    assert results[4]["status"] == "not_found"
    assert await invariants(course["id"], in_order=False) == 6
    stored = await _enrollment(course["id"], ids[5])
    assert stored["due_at"].isoformat().startswith("2031-03-01T09:00:00")


async def test_emails_duplicates_across_chunks_are_duplicates(
    api, admin, create_course, job_queue, invariants
):
    # given emails in mixed case, the same user again in later chunks (chunks of 4)
    course = await create_course()
    ids = await _users(5, prefix="mail")
    emails = [
        "mail0@example.com",
        "MAIL1@example.com",
        "mail2@EXAMPLE.com",
        "mail3@example.com",
        "Mail0@Example.com",  # chunk 1: mail0 again
        "mail4@example.com",
        "ghost@example.com",
        "mail1@example.com",  # mail1 again
        "GHOST@example.com",  # chunk 2: the unknown one again
        "mail4@example.com",  # the same spelling twice
    ]
    job = (await api.post(_url(course["id"]), json={"emails": emails}, headers=admin[1])).json()
    done = await _run(api, admin, job_queue, job)
    # then each user (and the unknown address) is one result, the rest are duplicates
    assert done["summary"] == {
        "requested": 10,
        "enrolled": 5,
        "already_enrolled": 0,
        "waitlisted": 0,
        "not_found": 1,
        "inactive": 0,
        "duplicates_in_request": 4,
    }
    results = await _all_results(api, admin[1], done["id"], limit=3)
    assert [r["user"] for r in results] == [*emails[:4], emails[5], emails[6]]
    assert [r["user_id"] for r in results] == [*ids[:4], ids[4], None]
    assert await invariants(course["id"], in_order=False) == 5


async def test_a_user_named_by_id_and_email_in_a_csv_is_one(
    api, admin, create_course, job_queue, invariants
):
    course = await create_course()
    ids = await _users(3, prefix="both")
    body = (
        "user_id,email\n"
        f"{ids[0]},\n,both1@example.com\n{ids[2]},\n,\n,BOTH0@example.com\n{ids[1]},\n"
    ).encode()
    response = await api.post(
        _url(course["id"]), content=body, headers={**admin[1], "Content-Type": "text/csv"}
    )
    assert response.status_code == 202, response.text
    done = await _run(api, admin, job_queue, response.json())
    assert done["summary"]["enrolled"] == 3
    assert done["summary"]["duplicates_in_request"] == 2
    results = await _all_results(api, admin[1], done["id"], limit=10)
    assert results == [
        {"user": str(ids[0]), "user_id": ids[0], "status": "enrolled"},
        {"user": "both1@example.com", "user_id": ids[1], "status": "enrolled"},
        {"user": str(ids[2]), "user_id": ids[2], "status": "enrolled"},
    ]
    assert await invariants(course["id"], in_order=False) == 3


async def test_csv_with_email_and_due_at_sets_and_moves_deadlines(
    api, admin, create_course, job_queue, invariants
):
    # given a user already enrolled with a deadline, and a CSV with a due_at column
    course = await create_course()
    ids = await _users(6, prefix="due")
    first = await api.post(
        f"/api/courses/{course['id']}/assign/",
        json={"user_id": ids[0], "due_at": FUTURE},
        headers=admin[1],
    )
    assert first.status_code == 201
    rows = [
        f"due0@example.com,{LATER}",  # enrolled: its deadline moves
        f"DUE1@example.com,{LATER}",
        "due2@example.com,",  # no deadline
        f"due3@example.com,{FUTURE}",
        "due4@example.com,",
        f"due5@example.com,{LATER}",
    ]
    body = ("\ufeffemail,due_at\r\n" + "\r\n".join(rows) + "\r\n").encode()
    response = await api.post(
        _url(course["id"]), content=body, headers={**admin[1], "Content-Type": "text/csv"}
    )
    assert response.status_code == 202, response.text
    done = await _run(api, admin, job_queue, response.json())
    assert done["summary"]["enrolled"] == 5
    assert done["summary"]["already_enrolled"] == 1
    results = await _all_results(api, admin[1], done["id"], limit=10)
    assert results[0] == {
        "user": "due0@example.com",
        "user_id": ids[0],
        "status": "already_enrolled",
        "due_at_updated": True,
    }
    deadlines = [(await _enrollment(course["id"], uid))["due_at"] for uid in ids]
    assert [d and d.isoformat()[:19] for d in deadlines] == [
        "2032-06-30T17:00:00",
        "2032-06-30T17:00:00",
        None,
        "2031-03-01T09:00:00",
        None,
        "2032-06-30T17:00:00",
    ]
    assert await invariants(course["id"], in_order=False) == 6


@pytest.mark.parametrize("override", [False, True])
async def test_capacity_waitlists_unless_overridden(
    api, admin, create_course, job_queue, invariants, override
):
    # given a course of 3 seats and a job of 6 users (two chunks)
    course = await create_course(capacity=3)
    ids = await _users(6, prefix="cap")
    body = {"user_ids": ids}
    if override:
        body["override_capacity"] = True
    job = (await api.post(_url(course["id"]), json=body, headers=admin[1])).json()
    done = await _run(api, admin, job_queue, job)
    # then the first three are seated and the rest wait, or all six are seated
    if override:
        assert done["summary"]["enrolled"] == 6
        assert done["summary"]["waitlisted"] == 0
        members = await get_db().enrollments.count_documents({"status": "active"})
        assert members == 6
    else:
        assert done["summary"]["enrolled"] == 3
        assert done["summary"]["waitlisted"] == 3
        assert await invariants(course["id"], in_order=False) == 3
    results = await _all_results(api, admin[1], done["id"], limit=10)
    assert set(results[0]) == {"user_id", "status"}  # JSON user_ids: v1 shape


async def test_override_capacity_as_a_csv_query_flag(api, admin, create_course, job_queue):
    course = await create_course(capacity=1)
    await _users(3, prefix="flag")
    body = b"username\nflag0\nflag1\nflag2\n"
    response = await api.post(
        _url(course["id"]) + "?override_capacity=true",
        content=body,
        headers={**admin[1], "Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    done = await _run(api, admin, job_queue, response.json())
    assert done["summary"]["enrolled"] == 3
    bad = await api.post(
        _url(course["id"]) + "?dry_run=maybe",
        content=body,
        headers={**admin[1], "Content-Type": "text/csv"},
    )
    assert bad.status_code == 400


async def test_dry_run_job_reports_and_writes_no_enrollment(
    api, admin, create_course, job_queue, invariants
):
    # given a course of 5 seats with one member, and 10 users, one of them named twice
    course = await create_course(capacity=5)
    ids = await _users(10, prefix="dry")
    member = await api.post(
        f"/api/courses/{course['id']}/assign/", json={"user_id": ids[0]}, headers=admin[1]
    )
    assert member.status_code == 201
    emails = [f"dry{i}@example.com" for i in range(10)] + ["DRY3@example.com"]
    # when a dry-run job runs (three chunks of 4, one after the other)
    response = await api.post(
        _url(course["id"]), json={"emails": emails, "dry_run": True}, headers=admin[1]
    )
    assert response.status_code == 202, response.text
    assert response.json()["dry_run"] is True
    done = await _run(api, admin, job_queue, response.json())
    # then the summary is what the assignment would do: 4 free seats across chunks
    assert done["status"] == "succeeded"
    assert done["dry_run"] is True
    assert done["summary"] == {
        "requested": 11,
        "enrolled": 4,
        "already_enrolled": 1,
        "waitlisted": 5,
        "not_found": 0,
        "inactive": 0,
        "duplicates_in_request": 1,
    }
    results = await _all_results(api, admin[1], done["id"], limit=4)
    assert [r["status"] for r in results] == ["already_enrolled"] + ["enrolled"] * 4 + [
        "waitlisted"
    ] * 5
    # and nothing was written but the job's own records
    assert await get_db().enrollments.count_documents({}) == 1
    assert await invariants(course["id"], in_order=False) == 1
    # the same dry run as CSV with ?dry_run=true answers the same summary
    body = ("email\n" + "\n".join(emails) + "\n").encode()
    again = await api.post(
        _url(course["id"]) + "?dry_run=true",
        content=body,
        headers={**admin[1], "Content-Type": "text/csv"},
    )
    assert again.status_code == 202
    assert (await _run(api, admin, job_queue, again.json()))["summary"] == done["summary"]


async def test_a_dry_chunk_counted_before_a_crash_is_not_run_again(
    api, admin, create_course, job_queue
):
    # given a dry-run job whose first chunk was counted, then "crashed" before done
    course = await create_course(capacity=2)
    ids = await _users(8, prefix="drycrash")
    job = (
        await api.post(
            _url(course["id"]), json={"user_ids": ids, "dry_run": True}, headers=admin[1]
        )
    ).json()
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=0) == "done"
    await get_db().assignment_job_chunks.update_one(
        {"job_id": job["id"], "chunk": 0}, {"$set": {"done": False, "lease_until": None}}
    )
    # when the queue runs it again, then the next one
    await job_queue()
    done = (await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])).json()
    # then the seats are counted once: 2 enrolled, 6 waitlisted
    assert done["status"] == "succeeded"
    assert done["summary"]["enrolled"] == 2
    assert done["summary"]["waitlisted"] == 6
    assert await get_db().enrollments.count_documents({}) == 0


async def test_the_console_service_creates_a_job_from_an_uploaded_csv(
    admin, create_course, job_queue, invariants
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from courses.job_repository import QUEUED

    course = await create_course()
    ids = await _users(5, prefix="upload")
    upload = SimpleUploadedFile(
        "cohort.csv",
        ("username,due_at\n" + "\n".join(f"upload{i},{FUTURE}" for i in range(5))).encode(),
        content_type="text/csv",
    )
    job = await jobs.job_create_from_csv(
        course_id=course["id"], admin_id=admin[0].id, upload=upload, override_capacity=True
    )
    assert job.status == QUEUED
    assert job.total == 5
    assert job.override_capacity is True
    assert job.with_identifiers is True
    await job_queue()
    assert await invariants(course["id"], in_order=False) == 5
    assert (await _enrollment(course["id"], ids[4]))["due_at"] is not None
    # a bad file is an InvalidInput naming the line, and stores nothing
    from common.errors import InvalidInput

    bad = SimpleUploadedFile("bad.csv", b'username\nupload0\nupload1,\n"x\n')
    with pytest.raises(InvalidInput, match="CSV line 4"):
        await jobs.job_create_from_csv(course_id=course["id"], admin_id=admin[0].id, upload=bad)
    assert await get_db().assignment_jobs.count_documents({}) == 1


async def test_out_of_order_chunks_and_a_rerun_keep_duplicates_right(
    api, admin, create_course, job_queue, invariants
):
    # given a user named in chunk 0 and (in another case) in chunk 1, chunk 1 run first
    course = await create_course()
    ids = await _users(5, prefix="order")
    emails = [f"order{i}@example.com" for i in range(4)] + [
        "ORDER0@example.com",
        "order4@example.com",
    ]
    job = (await api.post(_url(course["id"]), json={"emails": emails}, headers=admin[1])).json()
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=1) == "done"
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=0) == "done"
    # when chunk 0 runs again after a "crash" before it was marked done
    await get_db().assignment_job_chunks.update_one(
        {"job_id": job["id"], "chunk": 0}, {"$set": {"done": False, "lease_until": None}}
    )
    await get_db().assignment_jobs.update_one(
        {"_id": job["id"]}, {"$set": {"status": "running", "finished_at": None}}
    )
    assert await jobs.job_chunk_run(job_id=job["id"], chunk=0) == "done"
    # then the chunk that ran first holds the user, the other counts a duplicate, once
    polled = (await api.get(f"/api/assignment-jobs/{job['id']}/", headers=admin[1])).json()
    assert polled["status"] == "succeeded"
    assert polled["summary"]["enrolled"] == 5
    assert polled["summary"]["duplicates_in_request"] == 1
    results = await _all_results(api, admin[1], job["id"], limit=10)
    assert [r["user"] for r in results] == emails[1:]
    assert [r["user_id"] for r in results] == [*ids[1:4], ids[0], ids[4]]
    assert [r["status"] for r in results] == ["enrolled"] * 5
    assert await invariants(course["id"], in_order=False) == 5
