"""Command behaviour of the stand-in, checked through the real PyMongo driver."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import Decimal128, Int64, ObjectId
from pymongo import ASCENDING, DESCENDING, InsertOne, MongoClient, ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.monitoring import CommandListener, CommandSucceededEvent

from standin.process import StandinProcess


def test_handshake_and_server_info(client: MongoClient) -> None:
    hello = client.admin.command("hello")
    assert hello["isWritablePrimary"] is True
    assert hello["maxWireVersion"] >= 17
    assert hello["logicalSessionTimeoutMinutes"] == 30
    assert hello["maxWriteBatchSize"] == 100_000
    assert client.admin.command("ping")["ok"] == 1
    assert client.server_info()["version"].startswith("7.")


def test_unknown_command_fails_fast(db: Database) -> None:
    with pytest.raises(OperationFailure) as info:
        db.command("definitelyNotACommand")
    assert info.value.code == 59


def test_transactions_are_refused(client: MongoClient, db: Database) -> None:
    db.t.insert_one({"a": 1})
    with client.start_session() as session, pytest.raises(OperationFailure):
        with session.start_transaction():
            db.t.insert_one({"a": 2}, session=session)
    assert db.t.count_documents({}) == 1


def test_insert_and_find_round_trip_bson_types(db: Database) -> None:
    when = dt.datetime(2024, 5, 17, 12, 30, 1, 123000, tzinfo=dt.UTC)
    doc = {
        "_id": ObjectId(),
        "price": Decimal128("49.99"),
        "when": when,
        "nested": {"list": [1, "two", {"three": 3.0}], "none": None},
        "flag": True,
    }
    db.items.insert_one(doc)
    assert db.items.find_one({"when": {"$gte": when}}) == doc
    assert db.items.find_one({"price": Decimal128("49.99")})["_id"] == doc["_id"]


def test_duplicate_key_on_insert_one(db: Database) -> None:
    db.users.create_index([("email", ASCENDING)], unique=True, name="email_unique")
    db.users.insert_one({"email": "a@example.com"})
    with pytest.raises(DuplicateKeyError) as info:
        db.users.insert_one({"email": "a@example.com"})
    assert info.value.code == 11000
    details = info.value.details
    assert details["keyPattern"] == {"email": 1}
    assert details["keyValue"] == {"email": "a@example.com"}
    assert "email_unique" in details["errmsg"]
    same_id = db.users.find_one()["_id"]
    with pytest.raises(DuplicateKeyError):
        db.users.insert_one({"_id": same_id, "email": "b@example.com"})


def test_unordered_and_ordered_bulk_write_errors(db: Database) -> None:
    db.e.create_index([("course_id", 1), ("user_id", 1)], unique=True)
    ops = [InsertOne({"course_id": 1, "user_id": i % 3}) for i in range(6)]
    with pytest.raises(BulkWriteError) as info:
        db.e.bulk_write(ops, ordered=False)
    result = info.value.details
    assert result["nInserted"] == 3
    assert [e["index"] for e in result["writeErrors"]] == [3, 4, 5]
    assert {e["code"] for e in result["writeErrors"]} == {11000}

    db.f.create_index([("k", 1)], unique=True)
    with pytest.raises(BulkWriteError) as info:
        db.f.insert_many([{"k": 1}, {"k": 1}, {"k": 2}], ordered=True)
    assert info.value.details["nInserted"] == 1
    assert db.f.count_documents({}) == 1


def test_update_operators(db: Database) -> None:
    course = db.courses.insert_one(
        {"title": "Go", "enrollers": 0, "enrolled_users": [], "tags": ["x"]}
    ).inserted_id

    def enroll(user_id: int) -> int:
        return db.courses.update_one(
            {"_id": course, "enrolled_users.user_id": {"$ne": user_id}},
            {
                "$inc": {"enrollers": 1},
                "$push": {"enrolled_users": {"$each": [{"user_id": user_id}]}},
            },
        ).modified_count

    assert enroll(5) == 1
    assert enroll(6) == 1
    assert enroll(5) == 0  # already enrolled: the $ne filter must not match
    doc = db.courses.find_one({"_id": course})
    assert doc["enrollers"] == 2
    assert [u["user_id"] for u in doc["enrolled_users"]] == [5, 6]

    db.courses.update_one({"_id": course}, {"$addToSet": {"tags": {"$each": ["x", "y"]}}})
    db.courses.update_one(
        {"_id": course}, {"$pull": {"enrolled_users": {"user_id": 5}}, "$set": {"title": "Rust"}}
    )
    db.courses.update_one({"_id": course}, {"$unset": {"enrollers": ""}})
    doc = db.courses.find_one({"_id": course})
    assert doc["tags"] == ["x", "y"]
    assert doc["enrolled_users"] == [{"user_id": 6}]
    assert doc["title"] == "Rust"
    assert "enrollers" not in doc

    db.courses.update_one(
        {"_id": course, "enrolled_users.user_id": 6}, {"$set": {"enrolled_users.$.grade": "A"}}
    )
    assert db.courses.find_one({"_id": course})["enrolled_users"] == [{"user_id": 6, "grade": "A"}]


def test_upsert_and_multi_update(db: Database) -> None:
    result = db.c.update_one(
        {"key": "k1"}, {"$set": {"v": 1}, "$setOnInsert": {"created": True}}, upsert=True
    )
    assert result.upserted_id is not None
    assert db.c.find_one({"key": "k1"}, {"_id": 0}) == {"key": "k1", "v": 1, "created": True}
    result = db.c.update_one(
        {"key": "k1"}, {"$set": {"v": 2}, "$setOnInsert": {"created": False}}, upsert=True
    )
    assert result.upserted_id is None
    assert result.matched_count == 1
    assert db.c.find_one({"key": "k1"})["created"] is True

    db.c.insert_many([{"group": "g", "n": i} for i in range(5)])
    result = db.c.update_many({"group": "g"}, {"$inc": {"n": 10}})
    assert result.matched_count == result.modified_count == 5
    assert sorted(d["n"] for d in db.c.find({"group": "g"})) == [10, 11, 12, 13, 14]
    with pytest.raises(OperationFailure) as info:
        db.c.update_one({"key": "k1"}, {"$set": {"_id": 1}})
    assert info.value.code == 66


def test_update_into_unique_conflict_is_a_write_error(db: Database) -> None:
    db.u.create_index("name", unique=True)
    db.u.insert_many([{"name": "a"}, {"name": "b"}])
    with pytest.raises(DuplicateKeyError):
        db.u.update_one({"name": "b"}, {"$set": {"name": "a"}})
    with pytest.raises(BulkWriteError) as info:
        db.u.bulk_write([UpdateOne({"name": "b"}, {"$set": {"name": "a"}})])
    assert info.value.details["writeErrors"][0]["code"] == 11000
    with pytest.raises(DuplicateKeyError):
        db.u.find_one_and_update({"name": "b"}, {"$set": {"name": "a"}})
    assert sorted(d["name"] for d in db.u.find()) == ["a", "b"]


def test_find_one_and_update_variants(db: Database) -> None:
    db.q.insert_many([{"k": i, "state": "new", "secret": "s"} for i in range(3)])
    after = db.q.find_one_and_update(
        {"state": "new"},
        {"$set": {"state": "taken"}},
        sort=[("k", DESCENDING)],
        projection={"_id": 0, "k": 1, "state": 1},
        return_document=ReturnDocument.AFTER,
    )
    assert after == {"k": 2, "state": "taken"}
    before = db.q.find_one_and_update({"k": 0}, {"$inc": {"n": 1}})
    assert "n" not in before
    assert db.q.find_one_and_update({"k": 99}, {"$set": {"x": 1}}) is None
    upserted = db.q.find_one_and_update(
        {"k": 99}, {"$set": {"x": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert upserted["k"] == 99
    assert upserted["x"] == 1
    removed = db.q.find_one_and_delete({"k": 1})
    assert removed["k"] == 1
    assert db.q.count_documents({"k": 1}) == 0
    replaced = db.q.find_one_and_replace(
        {"k": 2}, {"k": 2, "fresh": True}, return_document=ReturnDocument.AFTER
    )
    assert replaced["fresh"] is True
    assert "state" not in replaced


def test_find_options_and_cursor_paging(db: Database) -> None:
    db.p.insert_many([{"i": i, "even": i % 2 == 0, "pad": "x" * 10} for i in range(250)])
    docs = list(db.p.find({}, {"pad": 0}).sort("i", DESCENDING).skip(5).limit(200).batch_size(7))
    assert [d["i"] for d in docs] == list(range(244, 44, -1))
    assert "pad" not in docs[0]
    assert len(list(db.p.find({"even": True}).batch_size(10))) == 125
    assert len(list(db.p.find())) == 250  # default first batch 101, then getMore
    assert [d["i"] for d in db.p.find({"i": {"$in": [3, 1, 2]}}).sort("i", 1)] == [1, 2, 3]
    assert db.p.find_one({"i": {"$gt": 248}}, {"_id": 0, "i": 1}) == {"i": 249}


def test_kill_cursors_on_early_close(standin: StandinProcess, db: Database) -> None:
    db.k.insert_many([{"i": i} for i in range(300)])
    replies: dict[str, dict] = {}

    class Listener(CommandListener):
        def started(self, event: object) -> None:
            pass

        def succeeded(self, event: CommandSucceededEvent) -> None:
            replies[event.command_name] = event.reply

        def failed(self, event: object) -> None:
            pass

    with MongoClient(standin.uri, event_listeners=[Listener()]) as watched:
        cursor = watched[db.name].k.find().batch_size(20)
        first = [next(cursor) for _ in range(25)]  # forces one getMore
        assert [d["i"] for d in first] == list(range(25))
        cursor.close()
        assert replies["getMore"]["cursor"]["id"] != 0
        assert len(replies["killCursors"]["cursorsKilled"]) == 1
        status = watched.admin.command("serverStatus")
        assert status["metrics"]["cursor"]["open"]["total"] == 0


def test_count_documents_distinct_and_aggregate(db: Database) -> None:
    db.s.insert_many(
        [{"course": c, "user": u, "score": u * 10} for c in ("a", "b") for u in range(10)]
    )
    assert db.s.count_documents({}) == 20
    assert db.s.count_documents({"course": "a"}) == 10
    assert db.s.count_documents({"course": "a"}, skip=3, limit=5) == 5
    assert db.s.count_documents({"course": "a"}, skip=8) == 2
    assert db.s.count_documents({"course": "zzz"}) == 0
    assert db.s.estimated_document_count() == 20
    assert sorted(db.s.distinct("course")) == ["a", "b"]
    assert sorted(db.s.distinct("user", {"course": "b", "score": {"$gte": 80}})) == [8, 9]
    grouped = list(
        db.s.aggregate(
            [
                {"$match": {"score": {"$gte": 50}}},
                {"$group": {"_id": "$course", "n": {"$sum": 1}, "total": {"$sum": "$score"}}},
                {"$sort": {"_id": 1}},
            ]
        )
    )
    assert grouped == [
        {"_id": "a", "n": 5, "total": 350},
        {"_id": "b", "n": 5, "total": 350},
    ]
    counted = list(db.s.aggregate([{"$match": {"course": "b"}}, {"$count": "n"}]))
    assert counted == [{"n": 10}]
    projected = list(
        db.s.aggregate(
            [
                {"$match": {"course": "a"}},
                {"$sort": {"user": -1}},
                {"$skip": 1},
                {"$limit": 2},
                {"$project": {"_id": 0, "user": 1}},
            ]
        )
    )
    assert projected == [{"user": 8}, {"user": 7}]
    computed = list(
        db.s.aggregate(
            [
                {"$match": {"user": 1}},
                {"$project": {"_id": 0, "double": {"$multiply": ["$score", 2]}}},
            ]
        )
    )
    assert computed == [{"double": 20}, {"double": 20}]


def test_indexes_lifecycle(db: Database) -> None:
    keys = [("course_id", ASCENDING), ("user_id", ASCENDING)]
    assert db.e.create_index(keys, unique=True, name="course_user_unique") == "course_user_unique"
    assert db.e.create_index(keys, unique=True, name="course_user_unique") == "course_user_unique"
    db.e.create_index([("user_id", ASCENDING), ("enrolled_at", DESCENDING)])
    indexes = {i["name"]: i for i in db.e.list_indexes()}
    assert set(indexes) == {"_id_", "course_user_unique", "user_id_1_enrolled_at_-1"}
    assert indexes["course_user_unique"]["unique"] is True
    assert list(indexes["course_user_unique"]["key"].items()) == keys
    with pytest.raises(OperationFailure):
        db.e.create_index([("other", 1)], name="course_user_unique")
    db.e.drop_index("user_id_1_enrolled_at_-1")
    assert set(db.e.index_information()) == {"_id_", "course_user_unique"}
    assert list(db.missing.list_indexes()) == []

    db.dups.insert_many([{"k": 1}, {"k": 1}])
    with pytest.raises(DuplicateKeyError):
        db.dups.create_index("k", unique=True)
    assert set(db.dups.index_information()) == {"_id_"}


def test_index_narrowed_queries_match_full_evaluation(db: Database) -> None:
    db.e.create_index([("course_id", 1), ("user_id", 1)], unique=True)
    db.e.create_index("tags")
    db.e.insert_many(
        [
            {"course_id": c, "user_id": u, "tags": [f"t{u % 3}", "all"], "n": u}
            for c in range(5)
            for u in range(20)
        ]
    )
    found = db.e.find({"course_id": 2, "user_id": {"$in": [1, 5, 7, 99]}, "n": {"$gt": 1}})
    assert sorted(d["user_id"] for d in found) == [5, 7]
    assert db.e.count_documents({"course_id": 3}) == 20
    assert db.e.count_documents({"course_id": 3.0, "user_id": 4}) == 1  # 3.0 == 3 in MongoDB
    assert db.e.count_documents({"tags": "t1"}) == 5 * 7
    assert db.e.count_documents({"$and": [{"course_id": 1}, {"tags": "t0"}]}) == 7
    db.e.update_many({"course_id": 4}, {"$set": {"course_id": 40}})
    assert db.e.count_documents({"course_id": 4}) == 0
    assert db.e.count_documents({"course_id": 40}) == 20
    db.e.delete_many({"course_id": 40, "user_id": {"$lt": 10}})
    assert db.e.count_documents({"course_id": 40}) == 10
    db.e.insert_one({"course_id": 40, "user_id": 0})  # freed by the delete


def test_collections_and_databases(client: MongoClient, db: Database) -> None:
    db.create_collection("made")
    db.other.insert_one({"x": 1})
    assert sorted(db.list_collection_names()) == ["made", "other"]
    assert db.name in client.list_database_names()
    db.other.rename("renamed")
    assert sorted(db.list_collection_names()) == ["made", "renamed"]
    db.drop_collection("made")
    db.drop_collection("never-existed")
    assert db.list_collection_names() == ["renamed"]
    client.drop_database(db.name)
    assert db.name not in client.list_database_names()


def test_delete(db: Database) -> None:
    db.d.insert_many([{"i": i} for i in range(10)])
    assert db.d.delete_one({"i": {"$gte": 5}}).deleted_count == 1
    assert db.d.delete_many({"i": {"$lt": 3}}).deleted_count == 3
    assert db.d.delete_many({}).deleted_count == 6
    assert db.nothing.delete_many({}).deleted_count == 0


def test_push_each_slice_keeps_the_newest_in_order(db):
    """The capped append of the membership model, in every shape of the fast path."""
    db.c.insert_one({"_id": 1, "a": list(range(10))})
    cases = [
        ([10], -5, [6, 7, 8, 9, 10]),
        ([11, 12, 13, 14, 15, 16], -5, [12, 13, 14, 15, 16]),  # more pushed than kept
        ([], -3, [14, 15, 16]),  # a pure trim
        ([17], -10, [14, 15, 16, 17]),  # shorter than the cap
        ([18, 19], -1, [19]),
    ]
    for values, limit, expected in cases:
        db.c.update_one({"_id": 1}, {"$push": {"a": {"$each": values, "$slice": limit}}})
        assert db.c.find_one({"_id": 1})["a"] == expected, (values, limit)
    db.c.update_one({"_id": 1}, {"$push": {"missing": {"$each": [1, 2, 3], "$slice": -2}}})
    assert db.c.find_one({"_id": 1})["missing"] == [2, 3]


def test_push_sort_slice_of_integers_keeps_the_largest(db):
    db.c.insert_one({"_id": 1, "ledger": [Int64(2**40), 3, 9]})
    db.c.update_one(
        {"_id": 1}, {"$push": {"ledger": {"$each": [5, 2**41], "$sort": 1, "$slice": -3}}}
    )
    assert db.c.find_one({"_id": 1})["ledger"] == [9, 2**40, 2**41]
    db.c.update_one({"_id": 1}, {"$push": {"ledger": {"$each": [True], "$sort": 1, "$slice": -4}}})
    assert db.c.find_one({"_id": 1})["ledger"] == [9, 2**40, 2**41, True]  # BSON order
