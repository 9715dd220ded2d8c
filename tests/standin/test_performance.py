"""Performance bars: the cost per operation must stay flat as the data grows.

Wall-clock bounds run under `make test-perf` only (the `perf` marker)."""

from __future__ import annotations

import time

import pytest
from pymongo import ASCENDING, InsertOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from tests.conftest import timed


@pytest.mark.perf
def test_single_inserts_with_unique_compound_index_keep_a_steady_rate(db: Database) -> None:
    db.enrollments.create_index(
        [("course_id", ASCENDING), ("user_id", ASCENDING)], unique=True, name="course_user"
    )
    durations = []
    for i in range(20_000):
        start = time.perf_counter()
        db.enrollments.insert_one({"course_id": i % 100, "user_id": i, "status": "active"})
        durations.append(time.perf_counter() - start)
    first, last = sum(durations[:1000]), sum(durations[-1000:])
    print(f"\nfirst 1,000 inserts {first:.3f}s, last 1,000 {last:.3f}s")
    assert last <= 1.5 * first, (first, last)
    assert db.enrollments.count_documents({}) == 20_000


@timed
def test_unordered_bulk_write_of_10k_with_duplicates_is_fast(db: Database, timed: bool) -> None:
    db.enrollments.create_index([("course_id", 1), ("user_id", 1)], unique=True)
    # user_id repeats every 9,900 inserts: the last 100 operations are duplicates.
    ops = [InsertOne({"course_id": 1, "user_id": i % 9_900}) for i in range(10_000)]
    start = time.perf_counter()
    with pytest.raises(BulkWriteError) as info:
        db.enrollments.bulk_write(ops, ordered=False)
    elapsed = time.perf_counter() - start
    print(f"\nbulk_write 10,000 in {elapsed:.3f}s")
    assert not timed or elapsed < 2.0
    details = info.value.details
    assert details["nInserted"] == 9_900
    assert [e["index"] for e in details["writeErrors"]] == list(range(9_900, 10_000))
    assert {e["code"] for e in details["writeErrors"]} == {11000}
    assert db.enrollments.count_documents({}) == 9_900


@pytest.mark.perf
def test_lookups_in_a_50k_collection_are_sub_millisecond(db: Database) -> None:
    db.users.create_index("email", unique=True)
    db.users.create_index([("team", 1), ("rank", 1)])
    db.users.insert_many(
        [
            {"email": f"u{i}@example.com", "team": i % 500, "rank": i, "bio": "x" * 64}
            for i in range(50_000)
        ]
    )
    ids = [d["_id"] for d in db.users.find({}, {"_id": 1}).skip(20_000).limit(500)]

    def average_ms(lookup) -> float:
        start = time.perf_counter()
        for i in range(500):
            assert lookup(i) is not None
        return (time.perf_counter() - start) / 500 * 1000

    by_id = average_ms(lambda i: db.users.find_one({"_id": ids[i]}))
    by_unique = average_ms(lambda i: db.users.find_one({"email": f"u{i * 97}@example.com"}))
    by_prefix = average_ms(
        lambda i: db.users.find_one({"team": i, "rank": {"$in": [i, i + 500, i + 1000]}})
    )
    print(
        f"\nlookup avg: _id {by_id:.3f} ms, unique key {by_unique:.3f} ms, "
        f"compound prefix + $in {by_prefix:.3f} ms"
    )
    assert by_id < 1.0
    assert by_unique < 1.0
    assert by_prefix < 1.0
