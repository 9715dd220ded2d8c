"""MongoDB outages against a real uvicorn server: quick 503s, self-recovery, no lost invariants."""

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter

import httpx
from bson import ObjectId
from pymongo import MongoClient

from devstack.stack import free_port
from standin.process import StandinProcess
from tests.conftest import timed
from tests.reliability.conftest import processes
from tests.reliability.servers import (
    PROJECT_ROOT,
    UvicornServer,
    bearer,
    mint_access,
    server_env,
)

COURSE = {
    "course_title": "Fire Safety",
    "course_description": "Mandatory.",
    "display_price": {"amount": "0.00", "currency": "USD"},
}


def _wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@processes
@timed
def test_mongodb_down_at_startup_then_recovers_without_restart(sqlite_copy, timed):
    db, ids = sqlite_copy
    port = free_port()  # nothing listens here until the stand-in starts below
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        MONGODB_DB="outage",
    )
    user = bearer(mint_access(ids["regular"], "regular"))
    admin = bearer(mint_access(ids["staff"], "staff", is_staff=True))
    with UvicornServer(env) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["mongodb"]
        assert "mongodb" in ready.json()["detail"]

        started = time.monotonic()
        courses = client.get("/api/courses/", headers=user)
        assert not timed or time.monotonic() - started < 3
        assert courses.status_code == 503
        assert courses.json()["detail"]
        assert courses.headers["Retry-After"]
        assert server.process.poll() is None

        with StandinProcess(port=port):
            _wait_for(lambda: client.get("/readyz").status_code == 200, timeout=15)
            assert client.get("/api/courses/", headers=user).status_code == 200
            course = client.post("/api/courses/", json=COURSE, headers=admin)
            assert course.status_code == 201
            enroll = f"/api/courses/{course.json()['id']}/enroll/"
            assert client.post(enroll, headers=user).status_code == 201
            assert client.post(enroll, headers=user).status_code == 200

            # The unique index that makes enrollment exactly-once exists although the
            # start-up attempt to create it failed: the first enrollment write created it.
            def unique_index():
                with MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true") as mc:
                    names = [i["name"] for i in mc["outage"]["enrollments"].list_indexes()]
                return "course_user_unique" in names

            assert unique_index()


async def _load(server_url, admin, users, course_ids, restart, after_restart):
    """Enrollments and bulk assignments while `restart()` runs, and `after_restart` seconds
    past its end (so recovery is observed however long the restart took)."""
    outcomes: list[tuple[str, int, float, str, int | None]] = []
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=server_url, timeout=15, limits=limits) as client:
        deadline = float("inf")
        rng = random.Random(7)

        async def enroller():
            while time.monotonic() < deadline:
                uid, token = rng.choice(users)
                course = rng.choice(course_ids)
                response = await client.post(f"/api/courses/{course}/enroll/", headers=token)
                outcomes.append(("enroll", response.status_code, time.monotonic(), course, uid))

        async def assigner():
            while time.monotonic() < deadline:
                course = rng.choice(course_ids)
                batch = [uid for uid, _ in rng.sample(users, 40)]
                response = await client.post(
                    f"/api/courses/{course}/assign-multiple/",
                    json={"user_ids": batch},
                    headers=admin,
                )
                outcomes.append(("bulk", response.status_code, time.monotonic(), course, None))

        async def chaos():
            nonlocal deadline
            await asyncio.to_thread(restart)
            deadline = time.monotonic() + after_restart

        await asyncio.gather(
            chaos(), *(enroller() for _ in range(12)), *(assigner() for _ in range(2))
        )
    return outcomes


@processes
def test_mongodb_killed_mid_load_loses_no_invariant(sqlite_copy, tmp_path):
    db, ids = sqlite_copy
    data_file = str(tmp_path / "standin.bson")
    standin = StandinProcess(data_file=data_file, snapshot_interval=0.2).start()
    port = standin.port
    # Server selection shorter than the 1 s outage: with the default 2 s, requests could
    # simply wait the outage out and succeed, and the 503 path would go unexercised.
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin.uri,
        MONGODB_DB="chaos",
        MONGODB_SERVER_SELECTION_TIMEOUT_MS="400",
        MONGODB_CONNECT_TIMEOUT_MS="400",
    )
    admin = bearer(mint_access(ids["staff"], "staff", is_staff=True))
    users = [(uid, bearer(mint_access(uid, f"bulk{n}"))) for n, uid in enumerate(ids["bulk"])]
    timeline: dict[str, float] = {}

    def kill_and_restart():
        nonlocal standin
        time.sleep(1.5)
        timeline["killed"] = time.monotonic()
        standin.kill()  # SIGKILL: no final snapshot
        time.sleep(1.0)
        standin = StandinProcess(port=port, data_file=data_file, snapshot_interval=0.2).start()
        timeline["restarted"] = time.monotonic()

    try:
        with UvicornServer(env) as server:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                course_ids = [
                    client.post("/api/courses/", json=COURSE, headers=admin).json()["id"]
                    for _ in range(3)
                ]
            time.sleep(0.5)  # let a snapshot include the courses
            outcomes = asyncio.run(
                _load(server.url, admin, users, course_ids, kill_and_restart, after_restart=3.0)
            )
            statuses = {status for _, status, *_ in outcomes}
            assert statuses <= {200, 201, 503}, sorted(statuses)
            assert 503 in statuses, "the outage should have been seen by some requests"
            assert {200, 201} & statuses
            after = [o for o in outcomes if o[2] > timeline["restarted"] + 0.5]
            assert any(status in (200, 201) for _, status, *_ in after), "did not recover"
            assert "Traceback" not in server.log()

        reconcile = subprocess.run(
            # The server is stopped: no request is in flight, so no grace period is needed.
            [sys.executable, "manage.py", "reconcile_enrollments", "--grace", "0"],
            cwd=PROJECT_ROOT,
            env=env | {"MONGODB_URI": standin.uri},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert reconcile.returncode == 0, reconcile.stderr
        counts = Counter(status for _, status, *_ in outcomes)
        print(f"kill mid-load: {len(outcomes)} requests {dict(counts)}; {reconcile.stdout}")

        with MongoClient(standin.uri) as client:
            mdb = client["chaos"]
            for course_id in course_ids:
                course = mdb.courses.find_one({"_id": ObjectId(course_id)})
                enrollments = list(mdb.enrollments.find({"course_id": ObjectId(course_id)}))
                pairs = [e["user_id"] for e in enrollments]
                listed = [u["user_id"] for u in course["enrolled_users"]]
                assert len(pairs) == len(set(pairs)), "duplicate (user, course) enrollment"
                assert course["enrollers"] == len(listed) == len(enrollments)
                assert sorted(listed) == sorted(pairs)
            # Acknowledged after recovery means stored: every self-enrollment answered
            # 200/201 once the restarted stand-in had taken a snapshot is there.
            settled = timeline["restarted"] + 0.5
            for kind, status, at, course_id, uid in outcomes:
                if kind == "enroll" and status in (200, 201) and at > settled:
                    assert mdb.enrollments.find_one(
                        {"course_id": ObjectId(course_id), "user_id": uid}
                    ), (course_id, uid)
    finally:
        standin.stop()
