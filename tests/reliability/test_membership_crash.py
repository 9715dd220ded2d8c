"""A bulk assignment whose server process is SIGKILLed between its two MongoDB writes,
then the identical request again: the retry counts what the dead one inserted
(courses.services.membership_apply_bulk)."""

import os
import signal
import threading
import uuid

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from tests.reliability.conftest import processes
from tests.reliability.servers import (
    UvicornServer,
    bearer,
    mint_access,
    prepare_sqlite,
    server_env,
)

COHORT = 5000
ATTEMPTS = 10
EMBEDDED = 1000


@pytest.fixture(scope="module")
def cohort_sqlite(tmp_path_factory):
    path = tmp_path_factory.mktemp("cohort") / "db.sqlite3"
    return path, prepare_sqlite(path, bulk=COHORT)


def _kill_between_the_writes(server: UvicornServer, db, admin: dict, ids: list[int]) -> str | None:
    """Start a bulk assignment and SIGKILL the server once its enrollments are in and the
    course is not counted yet; the course id if that moment was caught, else None."""
    course = httpx.post(
        server.url + "/api/courses/",
        json={
            "course_title": "Compliance",
            "course_description": "Everybody.",
            "display_price": {"amount": "0.00", "currency": "USD"},
        },
        headers=admin,
        timeout=30,
    ).json()
    course_id = ObjectId(course["id"])

    def assign() -> None:
        try:
            httpx.post(
                f"{server.url}/api/courses/{course['id']}/assign-multiple/",
                json={"user_ids": ids},
                headers=admin,
                timeout=60,
            )
        except httpx.HTTPError:
            pass  # the server dies under it

    request = threading.Thread(target=assign)
    request.start()
    pid = server.process.pid
    try:
        while request.is_alive():
            if db.enrollments.find_one({"course_id": course_id}, {"_id": 1}) is not None:
                os.kill(pid, signal.SIGSTOP)  # freeze it, then look
                counted = db.courses.find_one({"_id": course_id})["enrollers"]
                server.kill()
                return course["id"] if counted == 0 else None
        return None
    finally:
        server.kill()
        request.join(timeout=60)


@processes
def test_bulk_killed_between_its_writes_then_the_identical_request_converges(
    cohort_sqlite, standin_uri
):
    path, users = cohort_sqlite
    ids = users["bulk"]
    env = server_env(
        DATABASE_URL=f"sqlite:///{path}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"crash_{uuid.uuid4().hex[:8]}",
        COURSE_EMBEDDED_MEMBERS=str(EMBEDDED),
    )
    admin = bearer(mint_access(users["staff"], "staff", is_staff=True))
    client = MongoClient(standin_uri)
    db = client[env["MONGODB_DB"]]
    try:
        course_id = None
        for _ in range(ATTEMPTS):
            course_id = _kill_between_the_writes(UvicornServer(env).start(), db, admin, ids)
            if course_id is not None:
                break
        assert course_id is not None, f"never caught the moment in {ATTEMPTS} attempts"
        oid = ObjectId(course_id)
        left = db.enrollments.count_documents({"course_id": oid})
        assert left > 0
        assert db.courses.find_one({"_id": oid})["enrollers"] == 0

        with UvicornServer(env) as server:
            retry = httpx.post(
                f"{server.url}/api/courses/{course_id}/assign-multiple/",
                json={"user_ids": ids},
                headers=admin,
                timeout=60,
            )
        assert retry.status_code == 200, retry.text
        report = retry.json()
        assert report["summary"]["already_enrolled"] == left
        assert report["summary"]["enrolled"] == COHORT - left
        assert report["enrollers"] == COHORT
        course = db.courses.find_one({"_id": oid})
        members = db.enrollments.count_documents({"course_id": oid})
        listed = [u["user_id"] for u in course["enrolled_users"]]
        assert course["enrollers"] == members == COHORT
        assert len(listed) == len(set(listed)) == EMBEDDED
        assert set(listed) <= set(ids)
    finally:
        client.drop_database(env["MONGODB_DB"])
        client.close()
