"""The stand-in refuses documents over 16 MiB as mongod does, on insert and on update."""

from __future__ import annotations

import bson
import pytest
from pymongo.database import Database
from pymongo.errors import OperationFailure, WriteError

LIMIT = 16 * 1024 * 1024
BAD_VALUE = 2
TOO_LARGE_AFTER_UPDATE = 17419


def _padded(size: int, **fields) -> dict:
    """A document of exactly ``size`` BSON bytes."""
    doc = {"_id": 1, **fields, "pad": ""}
    doc["pad"] = "x" * (size - len(bson.encode(doc)))
    assert len(bson.encode(doc)) == size
    return doc


def test_a_document_of_exactly_16_mib_is_stored(db: Database) -> None:
    db.c.insert_one(_padded(LIMIT))
    assert len(bson.encode(db.c.find_one({"_id": 1}))) == LIMIT


def test_insert_over_16_mib_is_refused_with_mongods_error(db: Database) -> None:
    # The driver refuses such an insert_one itself; the raw command (which it allows up to
    # 16 MiB + 16 KiB) reaches the server, as another driver's insert would.
    reply = db.command({"insert": "c", "documents": [_padded(LIMIT + 1)]})
    assert reply["n"] == 0
    [error] = reply["writeErrors"]
    assert error["code"] == BAD_VALUE
    assert error["errmsg"] == (
        f"object to insert too large. size in bytes: {LIMIT + 1}, max size: {LIMIT}"
    )
    assert db.c.count_documents({}) == 0


def test_push_past_16_mib_is_refused_and_the_document_kept(db: Database) -> None:
    db.c.insert_one(_padded(LIMIT - 100, members=[]))
    with pytest.raises(WriteError) as info:
        db.c.update_one({"_id": 1}, {"$push": {"members": "m" * 200}})
    assert info.value.code == TOO_LARGE_AFTER_UPDATE
    assert str(LIMIT) in str(info.value)
    assert db.c.find_one({"_id": 1})["members"] == []


def test_find_and_modify_past_16_mib_is_refused(db: Database) -> None:
    db.c.insert_one(_padded(LIMIT - 100))
    with pytest.raises(OperationFailure) as info:
        db.c.find_one_and_update({"_id": 1}, {"$set": {"more": "y" * 200}})
    assert info.value.code == TOO_LARGE_AFTER_UPDATE
    assert "more" not in db.c.find_one({"_id": 1})


@pytest.mark.parametrize(
    "update",
    [
        pytest.param({"$set": {"items.$[].note": "n" * 60_000}}, id="all-positional fan-out"),
        pytest.param({"$set": {"items.5000": 1}}, id="array padded with nulls"),
        pytest.param([{"$set": {"copy": "$items"}}], id="pipeline"),
    ],
)
def test_updates_without_a_size_bound_are_measured(db: Database, update) -> None:
    """Updates that grow a document far beyond their own size are still caught."""
    items = [{"i": i, "s": "s" * 100} for i in range(300)]  # about 35 kB
    big = LIMIT - 20_000
    db.c.insert_one(_padded(big, items=items))
    with pytest.raises(WriteError) as info:
        db.c.update_one({"_id": 1}, update)
    assert info.value.code == TOO_LARGE_AFTER_UPDATE
    assert db.c.find_one({"_id": 1})["items"] == items


def test_replacement_over_16_mib_is_refused(db: Database) -> None:
    db.c.insert_one({"_id": 1, "small": True})
    with pytest.raises(WriteError) as info:
        db.c.replace_one({"_id": 1}, {k: v for k, v in _padded(LIMIT + 1).items() if k != "_id"})
    assert info.value.code == TOO_LARGE_AFTER_UPDATE
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "small": True}


def test_many_small_pushes_stop_exactly_at_the_limit(db: Database) -> None:
    """The cheap size bound never refuses a document that would still fit."""
    db.c.insert_one(_padded(LIMIT - 5_000, members=[]))
    update = {"$push": {"members": "m" * 90}, "$inc": {"n": 1}}
    pushed, refused = 0, None
    while refused is None and pushed < 1_000:
        try:
            db.c.update_one({"_id": 1}, update)
            pushed += 1
        except WriteError as error:
            refused = error.code
    assert refused == TOO_LARGE_AFTER_UPDATE
    stored = db.c.find_one({"_id": 1})
    assert len(stored["members"]) == pushed > 40
    size = len(bson.encode(stored))
    assert size <= LIMIT
    # One more member (index key, type byte, string header, 90 bytes) would not have fit.
    assert size + 1 + len(str(pushed)) + 1 + 4 + 91 > LIMIT
