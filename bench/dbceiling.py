"""`python -m bench.dbceiling`: the database ceiling, no HTTP and no API server.

Issues exactly the MongoDB operations of one first-time enroll, straight from the async
driver, with `--concurrency` enrolls in flight:

1. `courses.find_one({_id}, {_id: 1})`
2. `enrollments.insert_one(enrollment)`
3. `courses.find_one_and_update({_id, "enrolled_users.user_id": {$ne: uid}},
   {$inc, $push, $set}, projection={enrollers: 1}, return_document=AFTER)`

Run by the benchmark pinned to the API server's core; prints one JSON object with the
client-side numbers (latencies in seconds, CPU seconds of this process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import Decimal128, ObjectId
from pymongo import AsyncMongoClient, ReturnDocument, WriteConcern

from bench.loadgen import new_event_loop

USER_ID_BASE = 10_000_000  # far from the SQL user ids the API enrolls


def _client(driver: str, uri: str) -> Any:
    options: dict[str, Any] = {"maxPoolSize": 100, "tz_aware": True, "appname": "bench-ceiling"}
    if driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        return AsyncIOMotorClient(uri, **options)
    return AsyncMongoClient(uri, **options)


def _now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def enroll(db: Any, course_id: ObjectId, user_id: int) -> bool:
    """One enroll's three operations; True when all three succeeded as a first enroll."""
    courses, enrollments = db["courses"], db["enrollments"]
    if await courses.find_one({"_id": course_id}, {"_id": 1}) is None:
        return False
    username = f"ceiling{user_id}"
    await enrollments.insert_one(
        {
            "_id": ObjectId(),
            "user_id": user_id,
            "username": username,
            "course_id": course_id,
            "status": "active",
            "enrolled_at": _now(),
            "source": "self",
            "assigned_by": None,
        }
    )
    doc = await courses.find_one_and_update(
        {"_id": course_id, "enrolled_users.user_id": {"$ne": user_id}},
        {
            "$inc": {"enrollers": 1},
            "$push": {"enrolled_users": {"$each": [{"user_id": user_id, "username": username}]}},
            "$set": {"updated_at": _now()},
        },
        projection={"enrollers": 1, "_id": 0},
        return_document=ReturnDocument.AFTER,
    )
    return doc is not None


async def _courses(db: Any, known: list[str], count: int) -> list[ObjectId]:
    """The ceiling's own courses (in its own database): created on the first run."""
    if known:
        return [ObjectId(c) for c in known]
    created = _now()
    docs = [
        {
            "_id": ObjectId(),
            "course_title": f"Ceiling course {i}",
            "course_description": "Database ceiling target.",
            "display_price": {"amount": Decimal128("10.00"), "currency": "USD"},
            "enrolled_users": [],
            "enrollers": 0,
            "created_at": created,
            "updated_at": created,
        }
        for i in range(count)
    ]
    await db["courses"].insert_many(docs)
    await db["enrollments"].create_index(
        [("course_id", 1), ("user_id", 1)], unique=True, name="course_user_unique"
    )
    return [doc["_id"] for doc in docs]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    client = _client(args.driver, args.uri)
    w = int(args.write_concern) if args.write_concern.isdigit() else args.write_concern
    db = client.get_database(args.db, write_concern=WriteConcern(w=w))
    course_ids = await _courses(db, args.known_courses, args.course_count)
    counter = iter(range(args.offset, 10**12))

    def pair() -> tuple[ObjectId, int]:
        number = next(counter)
        return course_ids[number % len(course_ids)], USER_ID_BASE + number // len(course_ids)

    latencies: list[float] = []
    errors = 0

    async def worker(deadline: float, record: bool) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            course_id, user_id = pair()
            started = time.perf_counter()
            try:
                ok = await enroll(db, course_id, user_id)
            except Exception:
                ok = False
            if record:
                latencies.append(time.perf_counter() - started)
                errors += not ok

    await db.command("ping")
    warmup_end = time.perf_counter() + args.warmup
    await asyncio.gather(*(worker(warmup_end, False) for _ in range(args.concurrency)))
    cpu_before, started = time.process_time(), time.perf_counter()
    deadline = started + args.duration
    await asyncio.gather(*(worker(deadline, True) for _ in range(args.concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    closing = client.close()
    if asyncio.iscoroutine(closing):
        await closing
    return {
        "sent": len(latencies),
        "errors": errors,
        "latencies": latencies,
        "wall": wall,
        "cpu": cpu,
        "consumed": next(counter) - args.offset,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "course_ids": [str(c) for c in course_ids],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbceiling")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--driver", choices=["pymongo", "motor"], default="pymongo")
    parser.add_argument("--courses", type=Path, required=True, help="file of course ids")
    parser.add_argument("--course-count", type=int, default=100, help="courses to create")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--offset", type=int, default=0, help="first (course, user) pair")
    parser.add_argument("--write-concern", default="majority")
    args = parser.parse_args()
    args.known_courses = args.courses.read_text().split() if args.courses.exists() else []
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result = runner.run(run(args))
    if not args.known_courses:
        args.courses.write_text("\n".join(result["course_ids"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
