"""An assignment job whose worker process is SIGKILLed mid-job, then a new worker: the job
finishes, every user is enrolled exactly once, the invariants hold without reconcile
(courses/jobs.py; docs/scaling.md 4.7). The issue's 200,000-user run is `make bench-jobs`.
"""

import json
import os
import signal
import time
import uuid

import httpx
import pytest
import redis
from bson import ObjectId
from pymongo import MongoClient

from devstack.stack import WorkerProcess
from tests.reliability.conftest import processes
from tests.reliability.servers import (
    UvicornServer,
    bearer,
    mint_access,
    prepare_sqlite,
    server_env,
)

COHORT = 20_000
CHUNK = 1000
EMBEDDED = 1000


@pytest.fixture(scope="module")
def cohort_sqlite(tmp_path_factory):
    path = tmp_path_factory.mktemp("jobs") / "db.sqlite3"
    return path, prepare_sqlite(path, bulk=COHORT)


def _freeze(pid: int) -> None:
    """SIGSTOP the process, wait until the kernel says it is stopped, then give commands it
    already sent time to land."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                break
        time.sleep(0.01)
    time.sleep(0.3)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@processes
def test_a_worker_killed_mid_job_is_resumed_by_another(cohort_sqlite, standin_uri, tmp_path):
    path, users = cohort_sqlite
    ids = users["bulk"]
    queue = f"resume-{uuid.uuid4().hex[:8]}"
    env = server_env(
        DATABASE_URL=f"sqlite:///{path}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"jobs_{uuid.uuid4().hex[:8]}",
        COURSE_EMBEDDED_MEMBERS=str(EMBEDDED),
        JOB_QUEUE_NAME=queue,
        JOB_CHUNK_SIZE=str(CHUNK),
        JOB_CHUNK_TIMEOUT_SECONDS="5",
        JOB_WORKER_CONCURRENCY="1",
    )
    admin = bearer(mint_access(users["staff"], "staff", is_staff=True))
    client = MongoClient(standin_uri)
    db = client[env["MONGODB_DB"]]
    log = tmp_path / "worker.log"
    try:
        with UvicornServer(env) as server:
            course = httpx.post(
                server.url + "/api/courses/",
                json={
                    "course_title": "Annual compliance",
                    "course_description": "Everybody.",
                    "display_price": {"amount": "0.00", "currency": "USD"},
                },
                headers=admin,
                timeout=30,
            ).json()
            body = "user_id\n" + "\n".join(map(str, ids)) + "\n"
            created = httpx.post(
                f"{server.url}/api/courses/{course['id']}/assignment-jobs/",
                content=body,
                headers={**admin, "Content-Type": "text/csv"},
                timeout=60,
            )
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            oid = ObjectId(course["id"])

            # given a worker SIGKILLed while a chunk's enrollments are in but not counted
            first = WorkerProcess(env, log_path=log).start()
            try:

                def in_flight() -> bool:
                    processed = db.assignment_jobs.find_one({"_id": job_id})["processed"]
                    enrolled = db.enrollments.count_documents({"course_id": oid})
                    return processed >= 2 * CHUNK and enrolled > processed

                def frozen_in_flight() -> bool:
                    # A chunk can finish between a look and the kill, and then no chunk is
                    # run twice: freeze the worker, let the stand-in finish what it was
                    # sent, and look again; kill only a worker frozen mid-chunk.
                    if not in_flight():
                        return False
                    _freeze(first.process.pid)
                    if in_flight():
                        return True
                    os.kill(first.process.pid, signal.SIGCONT)
                    return False

                _wait(frozen_in_flight, 120, "a chunk in flight")
            finally:
                first.kill()
            killed_at = time.monotonic()
            stopped = db.assignment_jobs.find_one({"_id": job_id})
            assert stopped["status"] == "running"
            assert stopped["processed"] < COHORT

            # when a new worker starts
            with WorkerProcess(env, log_path=log):
                done = _wait(
                    lambda: db.assignment_jobs.find_one(
                        {"_id": job_id, "status": {"$ne": "running"}}
                    ),
                    180,
                    "the job to finish",
                )
            resumed_in = time.monotonic() - killed_at
            polled = httpx.get(f"{server.url}/api/assignment-jobs/{job_id}/", headers=admin)

        # then the job succeeded and counted everyone once
        assert done["status"] == "succeeded", done
        job = polled.json()
        assert job["processed"] == job["total"] == COHORT
        assert job["summary"]["enrolled"] == COHORT
        assert job["summary"]["already_enrolled"] == 0
        # and every user is in exactly once, the course counted right, with no reconcile
        course_doc = db.courses.find_one({"_id": oid})
        enrollments = db.enrollments.count_documents({"course_id": oid})
        distinct = len(db.enrollments.distinct("user_id", {"course_id": oid}))
        listed = [u["user_id"] for u in course_doc["enrolled_users"]]
        assert course_doc["enrollers"] == enrollments == distinct == COHORT
        assert len(listed) == len(set(listed)) == EMBEDDED
        assert set(listed) <= set(ids)
        # and every user has one result, in chunk documents
        results = list(db.assignment_job_results.find({"job_id": job_id}))
        assert len(results) == COHORT // CHUNK
        statuses = [result["status"] for doc in results for result in doc["results"]]
        assert len(statuses) == COHORT
        assert set(statuses) == {"enrolled"}
        # and the workers logged a JSON line per chunk, one chunk at least run twice
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        chunks = [line for line in lines if line.get("message") == "assignment job chunk"]
        # (a chunk the killed worker had counted may lack its line: SIGKILL can land between
        # the count and the log line)
        logged = {line["chunk"] for line in chunks}
        assert logged | set(stopped.get("counted", [])) == set(range(COHORT // CHUNK))
        assert all(line["job_id"] == job_id and line["ms"] > 0 for line in chunks)
        assert any(line["attempt"] > 1 for line in chunks)
        print(
            f"\nresume: killed at {stopped['processed']}/{COHORT} processed; "
            f"finished {resumed_in:.1f} s after the kill; "
            f"median chunk {sorted(c['ms'] for c in chunks)[len(chunks) // 2]} ms"
        )
    finally:
        client.drop_database(env["MONGODB_DB"])
        client.close()
        redis.Redis.from_url("redis://127.0.0.1:6379/0").delete(f"{queue}")
