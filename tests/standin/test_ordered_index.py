"""Ordered index paths: a roster page by cursor, a `$group` by status and a range count
answered from an index (standin/indexes.py), checked against a plain sort/count in Python
after inserts, updates and deletes. Wall-clock bounds run under `make test-perf` only."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter

import pytest
from bson import ObjectId
from mongomock.filtering import filter_applies
from pymongo import ASCENDING
from pymongo.database import Database

from standin.indexes import Index, normalize_spec
from standin.store import Collection
from tests.conftest import timed

STATUSES = ("active", "waitlisted", "completed", "withdrawn")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _roster_indexes(db: Database) -> None:
    db.enrollments.create_index([("course_id", ASCENDING), ("_id", ASCENDING)], name="roster")
    db.enrollments.create_index(
        [("course_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)], name="status"
    )
    db.enrollments.create_index(
        [("course_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)], name="due"
    )


def _churned(db: Database, n: int, seed: int) -> list[dict]:
    """n enrollments over 3 courses, inserted out of `_id` order, some of them then moved
    to another status or deleted; returns what is stored, read back without an index."""
    rng = random.Random(seed)
    courses = [ObjectId() for _ in range(3)]
    docs = [
        {
            "_id": ObjectId(),
            "course_id": rng.choice(courses),
            "status": rng.choice(STATUSES),
            "due_at": rng.choice([None, T0 + dt.timedelta(days=rng.randrange(60))]),
        }
        for _ in range(n)
    ]
    rng.shuffle(docs)  # natural order differs from `_id` order
    db.enrollments.insert_many(docs)
    for doc in rng.sample(docs, n // 5):
        db.enrollments.update_one({"_id": doc["_id"]}, {"$set": {"status": "withdrawn"}})
    for doc in rng.sample(docs, n // 10):
        db.enrollments.delete_one({"_id": doc["_id"]})
    return list(db.enrollments.find({}, hint="_id_"))


def test_roster_pages_by_cursor_are_the_sorted_roster(db: Database) -> None:
    # Given enrollments of several courses, inserted out of `_id` order, then churned
    _roster_indexes(db)
    stored = _churned(db, 3_000, seed=1)
    for course in {d["course_id"] for d in stored}:
        for status in (None, "active", "withdrawn"):
            where = {"course_id": course, **({"status": status} if status else {})}
            expected = sorted(
                (d["_id"] for d in stored if all(d[k] == v for k, v in where.items())),
            )
            # When the roster is read page by page after the last id seen
            pages, after = [], None
            while True:
                query = {**where, **({"_id": {"$gt": after}} if after else {})}
                page = [d["_id"] for d in db.enrollments.find(query).sort("_id", 1).limit(100)]
                pages += page
                if len(page) < 100:
                    break
                after = page[-1]
            # Then the pages are the whole roster in `_id` order, each enrollment once
            assert pages == expected
            newest = [d["_id"] for d in db.enrollments.find(where).sort("_id", -1).limit(7)]
            assert newest == expected[::-1][:7]


def test_group_by_status_and_range_count_match_the_documents(db: Database) -> None:
    # Given churned enrollments with and without a due date
    _roster_indexes(db)
    stored = _churned(db, 2_000, seed=2)
    bound = T0 + dt.timedelta(days=30)
    for course in {d["course_id"] for d in stored}:
        mine = [d for d in stored if d["course_id"] == course]
        # When the report's aggregation and overdue count run
        grouped = db.enrollments.aggregate(
            [{"$match": {"course_id": course}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )
        overdue = db.enrollments.count_documents(
            {"course_id": course, "status": "active", "due_at": {"$lt": bound}}
        )
        due_by = db.enrollments.count_documents(
            {"course_id": course, "status": "active", "due_at": {"$lte": bound, "$gt": T0}}
        )
        # Then they agree with the documents (a null due date is never before a date)
        assert {g["_id"]: g["n"] for g in grouped} == Counter(d["status"] for d in mine)
        active = [d for d in mine if d["status"] == "active" and d["due_at"] is not None]
        assert overdue == sum(1 for d in active if d["due_at"] < bound)
        assert due_by == sum(1 for d in active if T0 < d["due_at"] <= bound)


def test_an_array_in_a_key_field_falls_back_to_the_general_path(db: Database) -> None:
    # Given an index whose sort field once held an array (multikey)
    _roster_indexes(db)
    course = ObjectId()
    db.enrollments.insert_many(
        [{"course_id": course, "status": s, "due_at": None} for s in STATUSES]
    )
    db.enrollments.insert_one({"course_id": course, "status": ["active", "completed"]})
    # When grouping by that field
    grouped = list(
        db.enrollments.aggregate(
            [{"$match": {"course_id": course}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )
    )
    # Then the array is one group of its own, as MongoDB groups it
    assert sorted((repr(g["_id"]), g["n"]) for g in grouped) == sorted(
        [(repr(s), 1) for s in STATUSES] + [(repr(["active", "completed"]), 1)]
    )


def test_the_planner_answers_from_the_index_without_a_scan() -> None:
    # Given a collection with the roster indexes, in process
    coll = Collection("db", "enrollments")
    for name, key in (
        ("roster", {"course_id": 1, "_id": 1}),
        ("status", {"course_id": 1, "status": 1, "_id": 1}),
        ("due", {"course_id": 1, "status": 1, "due_at": 1}),
    ):
        coll.add_index(Index(normalize_spec({"key": key, "name": name})))
    course = ObjectId()
    ids = sorted(ObjectId() for _ in range(50))
    for i, oid in enumerate(reversed(ids)):
        coll.insert({"_id": oid, "course_id": course, "status": STATUSES[i % 2], "due_at": None})
    # When a deep roster page, the status counts and a range count are asked for
    page = coll.find_ordered({"course_id": course, "_id": {"$gt": ids[39]}}, {"_id": 1}, 5)
    counts = coll.group_counts({"course_id": course}, "status")
    overdue = coll.count_range({"course_id": course, "status": "active", "due_at": {"$lt": T0}})
    # Then each is served by an index path (None would mean a scan of the course)
    assert [d["_id"] for d in page or []] == ids[40:45]
    assert counts == {"active": 25, "waitlisted": 25}
    assert overdue == 0
    # but not a query with an equality the ordered index lacks (another may narrow it)
    assert coll.find_ordered({"course_id": course, "user_id": 3}, {"_id": 1}, 5) is None
    # and a range in a type no document holds (no due dates at all) sorts nothing
    assert coll.indexes["due"].ordered == {}


@timed
def test_roster_and_report_of_a_big_course_do_not_walk_it(db: Database, timed: bool) -> None:
    # Given a course of 200,000 enrollments
    _roster_indexes(db)
    course = ObjectId()
    ids = [ObjectId() for _ in range(200_000)]
    for start in range(0, len(ids), 10_000):
        db.enrollments.insert_many(
            [
                {"_id": oid, "course_id": course, "status": "active", "due_at": None}
                for oid in ids[start : start + 10_000]
            ]
        )
    deep = {"course_id": course, "status": "active", "_id": {"$gt": ids[180_000]}}

    def reads() -> tuple[list, list, int]:
        page = list(db.enrollments.find(deep).sort("_id", 1).limit(101))
        grouped = list(
            db.enrollments.aggregate(
                [
                    {"$match": {"course_id": course}},
                    {"$group": {"_id": "$status", "n": {"$sum": 1}}},
                ]
            )
        )
        overdue = db.enrollments.count_documents(
            {"course_id": course, "status": "active", "due_at": {"$lt": T0}}
        )
        return page, grouped, overdue

    reads()  # the first reads sort the buckets they use, once
    # When a deep page and the report's reads run again
    started = time.perf_counter()
    page, grouped, overdue = reads()
    elapsed = time.perf_counter() - started
    print(f"\ndeep page + group + overdue count at 200,000: {elapsed * 1000:.1f} ms")
    # Then the answers are right, and (timed) take milliseconds, not a walk of the course
    assert [d["_id"] for d in page] == ids[180_001:180_102]
    assert grouped == [{"_id": "active", "n": 200_000}]
    assert overdue == 0
    assert not timed or elapsed < 0.05


pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(
    "spec",
    [
        {"key": {"course_id": 1, "status": 1, "_id": 1}, "name": "plain"},
        {"key": {"a": 1}, "name": "sparse", "sparse": True},
        {"key": {"a": 1, "b": -1}, "name": "sparse2", "sparse": True},
        {
            "key": {"course_id": 1, "status": 1, "waitlist_key": 1},
            "name": "partial",
            "partialFilterExpression": {"status": "waitlisted"},
        },
        {"key": {"a": 1}, "name": "partial_exists", "partialFilterExpression": {"a": {"$gt": 1}}},
    ],
)
def test_top_level_keys_match_the_general_path(spec: dict) -> None:
    """`keys_for` and `order_entry` read top-level fields with `dict.get`: the same keys,
    entries and multikey flag as the dotted-path walk for every kind of value."""
    values = [
        None, 0, 1, 1.0, 2.5, float("nan"), True, False, "s", "waitlisted", "active",
        ObjectId(), T0, {"x": 1}, {}, [], [1, 2], [[1]], [{"x": 1}], b"bin",
    ]  # fmt: skip
    fields = [*spec["key"], "a", "b"]
    rng = random.Random(7)
    fast, general = Index(normalize_spec(spec)), Index(normalize_spec(spec))
    general.top_level = False
    for seq in range(600):
        doc = {f: rng.choice(values) for f in fields if rng.random() < 0.8}
        if rng.random() < 0.5:
            doc["status"] = rng.choice(STATUSES)
        doc["_id"] = ObjectId()
        assert fast.keys_for(doc) == general.keys_for(doc), doc
        assert fast.multikey == general.multikey
        if fast.partial is not None:
            assert fast._in_partial(doc) == filter_applies(fast.partial, doc), doc
        assert fast.order_entry(doc, seq, doc["_id"]) == general.order_entry(doc, seq, doc["_id"])
