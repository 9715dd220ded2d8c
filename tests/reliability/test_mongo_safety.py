"""Data safety when MongoDB loses what the service remembers about it (issue 11, 5 and 6).

Real processes: a stand-in restarted without its data file (no courses, no indexes) under
a running uvicorn server, courses deleted behind the service's back, and the repair
commands run as an operator would run them.
"""

import asyncio
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from bson import ObjectId
from pymongo import MongoClient

from standin.process import StandinProcess
from tests.reliability.conftest import processes
from tests.reliability.servers import (
    PROJECT_ROOT,
    UvicornServer,
    bearer,
    mint_access,
    server_env,
)
from tests.reliability.test_mongo_faults import COURSE, _wait_for


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter, our manage.py
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _has_unique_index(mdb) -> bool:
    return any(
        spec.get("unique") and list(spec["key"]) == ["course_id", "user_id"]
        for spec in mdb.enrollments.list_indexes()
    )


def _duplicate_pairs(mdb) -> int:
    pairs = Counter((e["course_id"], e["user_id"]) for e in mdb.enrollments.find())
    return sum(1 for n in pairs.values() if n > 1)


def _restart_empty(standin: StandinProcess) -> StandinProcess:
    """Stop the stand-in and start it again on its port without its data file."""
    port = standin.port
    standin.stop()
    return StandinProcess(port=port).start()


class _Stack:
    """A stand-in with a data file and a uvicorn server on it."""

    def __init__(self, sqlite_copy, tmp_path, name: str, *, workers: int = 1) -> None:
        db, self.ids = sqlite_copy
        self.standin = StandinProcess(data_file=str(tmp_path / "standin.bson")).start()
        self.env = server_env(
            DATABASE_URL=f"sqlite:///{db}", MONGODB_URI=self.standin.uri, MONGODB_DB=name
        )
        self.name = name
        self.admin = bearer(mint_access(self.ids["staff"], "staff", is_staff=True))
        self.user = bearer(mint_access(self.ids["regular"], "regular"))
        self.server = UvicornServer(self.env, workers=workers)

    def mdb(self, client: MongoClient):
        return client[self.name]

    def __enter__(self):
        try:
            self.server.start()
        except BaseException:
            self.standin.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        try:
            self.server.__exit__(*exc_info)
        finally:
            self.standin.stop()


async def _assign_concurrently(url: str, path: str, headers, user_ids: list[int], times: int):
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(
            *(client.post(path, json={"user_ids": user_ids}, headers=headers) for _ in range(times))
        )


@processes
def test_restart_without_data_file_never_duplicates_nor_writes_into_a_vanished_course(
    sqlite_copy, tmp_path
):
    # Three workers, so the three requests really overlap (one worker runs its SQL reads
    # on one thread, which serializes them); each ensured the indexes at start-up.
    with _Stack(sqlite_copy, tmp_path, "lost", workers=3) as stack:
        client = httpx.Client(base_url=stack.server.url, timeout=30)
        old = client.post("/api/courses/", json=COURSE, headers=stack.admin).json()["id"]
        # The service now knows the course exists and that the unique index does.
        assert client.post(f"/api/courses/{old}/enroll/", headers=stack.user).status_code == 201

        stack.standin = _restart_empty(stack.standin)
        _wait_for(lambda: client.get("/readyz").status_code == 200, timeout=20)

        # The remembered course is gone with the data: 404, and nothing written for it.
        some = stack.ids["bulk"][:50]
        vanished = client.post(
            f"/api/courses/{old}/assign-multiple/", json={"user_ids": some}, headers=stack.admin
        )
        assert vanished.status_code == 404, vanished.text
        again = client.post(f"/api/courses/{old}/enroll/", headers=stack.user)
        assert again.status_code == 404, again.text

        # Three identical concurrent bulk assignments into a new course.
        course = client.post("/api/courses/", json=COURSE, headers=stack.admin).json()["id"]
        users = stack.ids["bulk"]
        responses = asyncio.run(
            _assign_concurrently(
                stack.server.url, f"/api/courses/{course}/assign-multiple/", stack.admin, users, 3
            )
        )
        assert [r.status_code for r in responses] == [200, 200, 200], [
            r.text[:200] for r in responses
        ]
        assert sum(r.json()["summary"]["enrolled"] for r in responses) == len(users)
        assert "Traceback" not in stack.server.log()
        client.close()

        with MongoClient(stack.standin.uri) as mc:
            mdb = stack.mdb(mc)
            assert mdb.enrollments.count_documents({"course_id": ObjectId(old)}) == 0
            assert _duplicate_pairs(mdb) == 0
            assert _has_unique_index(mdb)
            stored = mdb.courses.find_one({"_id": ObjectId(course)})
            assert stored["enrollers"] == len(stored["enrolled_users"]) == len(users)
            assert mdb.enrollments.count_documents({"course_id": ObjectId(course)}) == len(users)


def _enrollment(course_id: ObjectId, user_id: int, at: datetime) -> dict:
    return {
        "_id": ObjectId(),
        "user_id": user_id,
        "username": f"user{user_id}",
        "course_id": course_id,
        "status": "active",
        "enrolled_at": at,
        "source": "admin",
        "assigned_by": None,
    }


@processes
def test_duplicates_refuse_enrollment_writes_until_dedupe_restores_the_index(sqlite_copy, tmp_path):
    with _Stack(sqlite_copy, tmp_path, "dupes") as stack:
        client = httpx.Client(base_url=stack.server.url, timeout=30)
        warm = client.post("/api/courses/", json=COURSE, headers=stack.admin).json()["id"]
        assert client.post(f"/api/courses/{warm}/enroll/", headers=stack.user).status_code == 201

        stack.standin = _restart_empty(stack.standin)
        # Not /readyz: readiness would recreate the unique index on the empty server.
        _wait_for(lambda: client.get("/api/courses/", headers=stack.user).status_code == 200, 20)
        course = client.post("/api/courses/", json=COURSE, headers=stack.admin).json()["id"]

        # What an unguarded window leaves: each of two users enrolled three times, and the
        # counters of an old reconcile that counted every copy.
        a, b = stack.ids["bulk"][:2]
        start = datetime(2025, 1, 1, tzinfo=UTC)
        cid = ObjectId(course)
        copies = [
            _enrollment(cid, uid, start + timedelta(minutes=n)) for uid in (a, b) for n in (2, 0, 1)
        ]
        # Same time as the oldest copy of `a`, but a later _id: the older _id must win.
        copies.append({**_enrollment(cid, a, start), "_id": ObjectId()})
        oldest = {copies[1]["_id"], copies[4]["_id"]}
        with MongoClient(stack.standin.uri) as mc:
            mdb = stack.mdb(mc)
            mdb.enrollments.insert_many(copies)
            mdb.courses.update_one(
                {"_id": cid},
                {
                    "$set": {
                        "enrollers": len(copies),
                        "enrolled_users": [
                            {"user_id": c["user_id"], "username": c["username"]} for c in copies
                        ],
                    }
                },
            )

            # Enrollment writes answer 503 while the unique index cannot exist.
            enroll = client.post(f"/api/courses/{course}/enroll/", headers=stack.user)
            assert enroll.status_code == 503, enroll.text
            assert enroll.json()["code"] == "service_unavailable"
            assert enroll.headers["Retry-After"]
            bulk = client.post(
                f"/api/courses/{course}/assign-multiple/",
                json={"user_ids": stack.ids["bulk"][:20]},
                headers=stack.admin,
            )
            assert bulk.status_code == 503, bulk.text
            assert mdb.enrollments.count_documents({}) == len(copies)  # nothing written
            assert "reconcile_enrollments --dedupe" in stack.server.log()

            # ensure_indexes explains instead of crashing.
            ensure = _manage(stack.env | {"MONGODB_URI": stack.standin.uri}, "ensure_indexes")
            assert ensure.returncode != 0
            assert "Traceback" not in ensure.stderr
            assert "2 duplicated (course_id, user_id) value(s)" in ensure.stderr
            assert "appears 4 times" in ensure.stderr
            assert "reconcile_enrollments --dedupe" in ensure.stderr

            # A plain reconcile refuses to count duplicates in.
            plain = _manage(stack.env | {"MONGODB_URI": stack.standin.uri}, "reconcile_enrollments")
            assert plain.returncode != 0
            assert "--dedupe" in plain.stderr
            assert mdb.courses.find_one({"_id": cid})["enrollers"] == len(copies)

            dedupe = _manage(
                stack.env | {"MONGODB_URI": stack.standin.uri}, "reconcile_enrollments", "--dedupe"
            )
            assert dedupe.returncode == 0, dedupe.stderr
            assert "removed 5" in dedupe.stdout
            assert {e["_id"] for e in mdb.enrollments.find({"course_id": cid})} == oldest
            stored = mdb.courses.find_one({"_id": cid})
            assert stored["enrollers"] == 2
            assert sorted(u["user_id"] for u in stored["enrolled_users"]) == sorted([a, b])
            assert _has_unique_index(mdb)

            # The service notices the index is back and takes writes again.
            _wait_for(
                lambda: (
                    client.post(f"/api/courses/{course}/enroll/", headers=stack.user).status_code
                    == 201
                ),
                timeout=20,
            )
            stored = mdb.courses.find_one({"_id": cid})
            assert stored["enrollers"] == len(stored["enrolled_users"]) == 3
            assert _duplicate_pairs(mdb) == 0
        assert "Traceback" not in stack.server.log()
        client.close()


@processes
def test_course_deleted_behind_the_service_gets_nothing_and_reconcile_finds_orphans(
    sqlite_copy, tmp_path
):
    with _Stack(sqlite_copy, tmp_path, "orphans") as stack:
        client = httpx.Client(base_url=stack.server.url, timeout=30)
        course = client.post("/api/courses/", json=COURSE, headers=stack.admin).json()["id"]
        kept = client.post("/api/courses/", json=COURSE, headers=stack.admin).json()["id"]
        assert client.post(f"/api/courses/{course}/enroll/", headers=stack.user).status_code == 201
        assert client.post(f"/api/courses/{kept}/enroll/", headers=stack.user).status_code == 201
        cid = ObjectId(course)
        with MongoClient(stack.standin.uri) as mc:
            mdb = stack.mdb(mc)
            mdb.courses.delete_one({"_id": cid})  # an operator, behind the service's back
            mdb.enrollments.delete_many({"course_id": cid})

            bulk = client.post(
                f"/api/courses/{course}/assign-multiple/",
                json={"user_ids": stack.ids["bulk"][:100]},
                headers=stack.admin,
            )
            assert bulk.status_code == 404, bulk.text
            assert mdb.enrollments.count_documents({"course_id": cid}) == 0

            # What a crash between a write and its undo would leave behind.
            now = datetime.now(UTC)
            mdb.enrollments.insert_many(
                [_enrollment(cid, uid, now) for uid in stack.ids["bulk"][:7]]
            )
            env = stack.env | {"MONGODB_URI": stack.standin.uri}
            report = _manage(env, "reconcile_enrollments")
            assert report.returncode == 0, report.stderr
            assert f"7 orphan enrollment(s) of 1 missing course(s): {course} (7)" in report.stdout
            assert "run with --orphans" in report.stdout
            assert "all consistent" not in report.stdout
            assert mdb.enrollments.count_documents({"course_id": cid}) == 7

            dry = _manage(env, "reconcile_enrollments", "--orphans", "--dry-run")
            assert "would remove them" in dry.stdout
            assert mdb.enrollments.count_documents({"course_id": cid}) == 7

            removed = _manage(env, "reconcile_enrollments", "--orphans")
            assert removed.returncode == 0, removed.stderr
            assert "removed 7" in removed.stdout
            assert mdb.enrollments.count_documents({"course_id": cid}) == 0
            assert mdb.enrollments.count_documents({"course_id": ObjectId(kept)}) == 1
            assert "all consistent" in _manage(env, "reconcile_enrollments").stdout
        client.close()
