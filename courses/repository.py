"""Every MongoDB query for courses and enrollments.

This is the only module that speaks MongoDB's dialect for this domain. It takes and
returns plain values (`courses.documents`), and turns driver errors into domain errors:
duplicate keys become return values, connection failures a 503 (`ServiceUnavailable`).
"""

import inspect
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson import Decimal128, Int64, ObjectId
from django.conf import settings
from pymongo import DESCENDING, InsertOne, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from courses import membership
from courses.documents import Course, CourseCounters, EnrolledUser, Enrollment
from mongo.client import get_collection, get_db, unavailable_on_driver_error
from mongo.indexes import COURSES, ENROLLMENTS, ensure_indexes_once

DUPLICATE_KEY = 11000
_LIST_PROJECTION = {"enrolled_users": 0}


def now() -> datetime:
    """The current time at MongoDB's millisecond precision, so a stored time reads back equal."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_id() -> str:
    return str(ObjectId())


@lru_cache(maxsize=4096)
def _decimal(bid: bytes) -> Decimal:
    # Decimal128.to_decimal is pure Python bit twiddling, paid per course on every list
    # page; prices repeat, so remember the conversion by the value's 16-byte encoding.
    return Decimal128.from_bid(bid).to_decimal()


def _course(doc: dict[str, Any]) -> Course:
    price = doc["display_price"]
    enrolled = doc.get("enrolled_users")
    return Course(
        id=str(doc["_id"]),
        course_title=doc["course_title"],
        course_description=doc["course_description"],
        amount=_decimal(price["amount"].bid),
        currency=price["currency"],
        enrollers=doc["enrollers"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        enrolled_users=None
        if enrolled is None
        else [EnrolledUser(user_id=u["user_id"], username=u["username"]) for u in enrolled],
    )


def _enrollment(doc: dict[str, Any]) -> Enrollment:
    return Enrollment(
        id=str(doc["_id"]),
        user_id=doc["user_id"],
        username=doc["username"],
        course_id=str(doc["course_id"]),
        status=doc["status"],
        enrolled_at=doc["enrolled_at"],
        source=doc["source"],
        assigned_by=doc.get("assigned_by"),
        op=doc.get("op"),
    )


def _enrollment_doc(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "_id": ObjectId(enrollment.id),
        "user_id": enrollment.user_id,
        "username": enrollment.username,
        "course_id": ObjectId(enrollment.course_id),
        "status": enrollment.status,
        "enrolled_at": enrollment.enrolled_at,
        "source": enrollment.source,
        "assigned_by": enrollment.assigned_by,
        "op": None if enrollment.op is None else Int64(enrollment.op),
    }


# Courses


async def course_insert(course: Course) -> None:
    doc = {
        "_id": ObjectId(course.id),
        "course_title": course.course_title,
        "course_description": course.course_description,
        "display_price": {"amount": Decimal128(course.amount), "currency": course.currency},
        "enrolled_users": [],
        "enrollers": 0,
        "applied": [],
        "created_at": course.created_at,
        "updated_at": course.updated_at,
    }
    with unavailable_on_driver_error():
        await get_collection(COURSES).insert_one(doc)
    _remember_course(course.id)


async def course_get(course_id: str, *, with_enrolled_users: bool = False) -> Course | None:
    projection = None if with_enrolled_users else _LIST_PROJECTION
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one({"_id": ObjectId(course_id)}, projection)
    return None if doc is None else _course(doc)


# Courses are never deleted by the service, so a course seen to exist can skip the
# existence query on the hot enroll path (one of its three round trips). Only positive
# answers are kept, per database, oldest forgotten first beyond the bound.
_known_courses: dict[tuple[str, str], None] = {}
KNOWN_COURSES_MAX = 10_000


def _remember_course(course_id: str) -> None:
    _known_courses[(get_db().name, course_id)] = None
    if len(_known_courses) > KNOWN_COURSES_MAX:
        del _known_courses[next(iter(_known_courses))]


async def course_exists(course_id: str, *, fresh: bool = False) -> bool:
    """Whether the course exists; `fresh` bypasses the process's memory of known courses."""
    key = (get_db().name, course_id)
    if not fresh and key in _known_courses:
        return True
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one({"_id": ObjectId(course_id)}, {"_id": 1})
    if doc is None:
        _known_courses.pop(key, None)
        return False
    _remember_course(course_id)
    return True


async def course_enrollers(course_id: str) -> int | None:
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one({"_id": ObjectId(course_id)}, {"enrollers": 1})
    return None if doc is None else doc["enrollers"]


async def course_count() -> int:
    # The unfiltered count comes from collection metadata (the `count` command), not a scan
    # through an aggregation; on a replica set it is exact except after an unclean shutdown.
    with unavailable_on_driver_error():
        return await get_collection(COURSES).estimated_document_count()


async def course_page(*, limit: int, offset: int) -> list[Course]:
    """Newest first, without `enrolled_users` (which can be large)."""
    cursor = (
        get_collection(COURSES)
        .find({}, _LIST_PROJECTION)
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .skip(offset)
        .limit(limit)
    )
    with unavailable_on_driver_error():
        return [_course(doc) async for doc in cursor]


async def course_titles(course_ids: Iterable[str]) -> dict[str, str]:
    """Titles of many courses in one query."""
    ids = [ObjectId(cid) for cid in set(course_ids)]
    if not ids:
        return {}
    cursor = get_collection(COURSES).find({"_id": {"$in": ids}}, {"course_title": 1})
    with unavailable_on_driver_error():
        return {str(doc["_id"]): doc["course_title"] async for doc in cursor}


async def course_all_ids() -> list[str]:
    cursor = get_collection(COURSES).find({}, {"_id": 1}).sort("_id")
    with unavailable_on_driver_error():
        return [str(doc["_id"]) async for doc in cursor]


def _embedded_members() -> int:
    return settings.COURSE_EMBEDDED_MEMBERS


def _member(user: EnrolledUser) -> dict[str, Any]:
    return {"user_id": user.user_id, "username": user.username}


def _op_guard(ops: Sequence[int]) -> dict[str, Any]:
    """Matches a course on which none of `ops` can have been applied or retired.

    `applied` keeps the APPLIED_OPS largest operation ids applied or retired on the course,
    in ascending order. An id absent from it was never recorded if the ledger is not full
    yet, or if the id is larger than its smallest entry (everything evicted was smaller
    than that); anything else may have been, and does not match.
    """
    recorded = [v for op in ops for v in (op, membership.retired(op))]
    return {
        "applied": {"$nin": recorded},
        "$or": [
            {f"applied.{membership.APPLIED_OPS - 1}": {"$exists": False}},
            {"applied.0": {"$lt": min(ops)}},
        ],
    }


def _record(ops: Sequence[int]) -> dict[str, Any]:
    return {"$each": list(ops), "$sort": 1, "$slice": -membership.APPLIED_OPS}


async def course_apply_op(
    course_id: str, op: int, *, count: int, members: Sequence[EnrolledUser]
) -> int | None:
    """Count one membership operation into the course, once: `count` more members, and
    `members` (its newest, oldest first) appended to `enrolled_users`, which keeps the
    COURSE_EMBEDDED_MEMBERS most recent. Returns the new `enrollers`, or None when the
    update did not apply (no such course, or `op` applied, retired or out of the window).

    One findAndModify whose server cost is bounded by the ledger and the embedded list,
    whatever the number of members.
    """
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one_and_update(
            {"_id": ObjectId(course_id), **_op_guard([op])},
            {
                "$inc": {"enrollers": count},
                "$push": {
                    "enrolled_users": {
                        "$each": [_member(u) for u in members],
                        "$slice": -_embedded_members(),
                    },
                    "applied": _record([op]),
                },
                "$set": {"updated_at": now()},
            },
            projection={"enrollers": 1, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )
    return None if doc is None else doc["enrollers"]


async def course_retire_op(course_id: str, op: int) -> bool:
    """Mark a bulk operation that was not applied as never to be applied; True if this call
    retired it (then its enrollments can be adopted by another operation)."""
    with unavailable_on_driver_error():
        result = await get_collection(COURSES).update_one(
            {"_id": ObjectId(course_id), **_op_guard([op])},
            {
                "$push": {"applied": _record([membership.retired(op)])},
                "$set": {"updated_at": now()},
            },
        )
    return result.modified_count == 1


async def course_ledger(course_id: str) -> list[int] | None:
    """The course's `applied` ledger (ascending), or None if there is no such course."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)}, {"applied": 1, "_id": 0}
        )
    if doc is None:
        return None
    return list(doc.get("applied") or [])


async def course_counters(course_id: str) -> CourseCounters | None:
    """What reconciliation compares: the counters, the embedded ids and the ledger."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)},
            {"enrollers": 1, "updated_at": 1, "enrolled_users.user_id": 1, "applied": 1},
        )
    if doc is None:
        return None
    return CourseCounters(
        enrollers=doc["enrollers"],
        updated_at=doc["updated_at"],
        enrolled_user_ids=[u["user_id"] for u in doc.get("enrolled_users", [])],
        applied=list(doc.get("applied") or []),
    )


async def course_replace_membership(
    course_id: str,
    *,
    expected: CourseCounters,
    enrollers: int,
    members: Sequence[EnrolledUser] | None,
    applied: Sequence[int],
) -> bool:
    """Set the counters, only if the course did not change since `expected` was read.

    `members` (None: unchanged) becomes `enrolled_users`; `applied` the ledger: the
    operations now counted in, so that a late retry of one of them finds it applied.
    """
    changes: dict[str, Any] = {
        "enrollers": enrollers,
        "applied": [Int64(op) for op in sorted(applied)[-membership.APPLIED_OPS :]],
        "updated_at": now(),
    }
    if members is not None:
        changes["enrolled_users"] = [_member(u) for u in members]
    with unavailable_on_driver_error():
        result = await get_collection(COURSES).update_one(
            {
                "_id": ObjectId(course_id),
                "enrollers": expected.enrollers,
                "updated_at": expected.updated_at,
                "applied": expected.applied,
            },
            {"$set": changes},
        )
    return result.matched_count == 1


async def course_trim_members(course_id: str) -> bool:
    """Migration: cut `enrolled_users` to its COURSE_EMBEDDED_MEMBERS newest entries and
    start an empty ledger where there is none. Atomic per course, so safe while enrollments
    go on; True if the course changed."""
    keep = _embedded_members()
    with unavailable_on_driver_error():
        trimmed = await get_collection(COURSES).update_one(
            {"_id": ObjectId(course_id), f"enrolled_users.{keep}": {"$exists": True}},
            {"$push": {"enrolled_users": {"$each": [], "$slice": -keep}}},
        )
        ledger = await get_collection(COURSES).update_one(
            {"_id": ObjectId(course_id), "applied": {"$exists": False}},
            {"$set": {"applied": []}},
        )
    return trimmed.modified_count + ledger.modified_count > 0


# Enrollments


async def _enrollments_for_write() -> Any:
    """The enrollments collection, once its unique index is known to exist: after a
    startup outage the first write creates the indexes (see ensure_indexes_once)."""
    await ensure_indexes_once(get_db())
    return get_collection(ENROLLMENTS)


async def enrollment_insert_or_get(enrollment: Enrollment) -> Enrollment | None:
    """Insert the enrollment unless its (course, user) pair has one; return that one.

    None means this call inserted it. One upsert answers both questions, so a repeat
    costs one command, not a failed insert followed by a read.
    """
    enrollments = await _enrollments_for_write()
    doc = _enrollment_doc(enrollment)
    pair = {"course_id": doc.pop("course_id"), "user_id": doc.pop("user_id")}
    for _ in range(2):
        try:
            with unavailable_on_driver_error():
                existing = await enrollments.find_one_and_update(
                    pair,
                    {"$setOnInsert": doc},
                    upsert=True,
                    return_document=ReturnDocument.BEFORE,
                )
            return None if existing is None else _enrollment(existing)
        except DuplicateKeyError:
            # Two upserts of one new pair raced; the unique index let one in. The retry
            # finds that one (MongoDB retries this itself since 4.2; older servers not).
            continue
    raise DuplicateKeyError("enrollment upsert kept colliding")


async def enrollment_insert_many(enrollments: Sequence[Enrollment]) -> set[int]:
    """One unordered bulk insert; returns the user ids that already had an enrollment."""
    if not enrollments:
        return set()
    collection = await _enrollments_for_write()
    try:
        with unavailable_on_driver_error():
            await collection.bulk_write(
                [InsertOne(_enrollment_doc(e)) for e in enrollments], ordered=False
            )
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error["code"] != DUPLICATE_KEY for error in errors):
            raise
        return {enrollments[error["index"]].user_id for error in errors}
    return set()


async def enrollment_delete(enrollment_id: str) -> None:
    with unavailable_on_driver_error():
        await get_collection(ENROLLMENTS).delete_one({"_id": ObjectId(enrollment_id)})


async def enrollment_ops_among(course_id: str, user_ids: Sequence[int]) -> dict[int, int | None]:
    """Which of `user_ids` are enrolled in the course, with the operation that counts each
    in (None for enrollments older than operations); one `$in` query."""
    cursor = get_collection(ENROLLMENTS).find(
        {"course_id": ObjectId(course_id), "user_id": {"$in": list(user_ids)}},
        {"user_id": 1, "op": 1, "_id": 0},
    )
    with unavailable_on_driver_error():
        return {doc["user_id"]: doc.get("op") async for doc in cursor}


async def enrollment_restamp(course_id: str, ops: Sequence[int], op: int | None) -> int:
    """Move the course's enrollments of (retired) `ops` to `op`; returns how many moved.
    None detaches them from operations: counted, never to be adopted again.

    Each enrollment is moved by one caller only (the filter requires its old id), so
    concurrent adopters of the same retired operation share its enrollments exactly.
    """
    collection = await _enrollments_for_write()
    with unavailable_on_driver_error():
        result = await collection.update_many(
            {"course_id": ObjectId(course_id), "op": {"$in": [Int64(o) for o in ops]}},
            {"$set": {"op": None if op is None else Int64(op)}},
        )
    return result.modified_count


async def enrollment_members_of_op(course_id: str, op: int, *, limit: int) -> list[EnrolledUser]:
    """The newest `limit` enrollments of one operation, oldest first."""
    cursor = (
        get_collection(ENROLLMENTS)
        .find(
            {"course_id": ObjectId(course_id), "op": Int64(op)},
            {"user_id": 1, "username": 1, "_id": 0},
        )
        .sort([("_id", DESCENDING)])
        .limit(limit)
    )
    with unavailable_on_driver_error():
        members = [EnrolledUser(doc["user_id"], doc["username"]) async for doc in cursor]
    return members[::-1]


async def enrollment_count_for_user(user_id: int) -> int:
    with unavailable_on_driver_error():
        return await get_collection(ENROLLMENTS).count_documents({"user_id": user_id})


async def enrollment_page_for_user(user_id: int, *, limit: int, offset: int) -> list[Enrollment]:
    cursor = (
        get_collection(ENROLLMENTS)
        .find({"user_id": user_id})
        .sort([("enrolled_at", DESCENDING), ("_id", DESCENDING)])
        .skip(offset)
        .limit(limit)
    )
    with unavailable_on_driver_error():
        return [_enrollment(doc) async for doc in cursor]


async def enrollment_member_count(course_id: str) -> int:
    """How many members the course has: the source of truth for `enrollers`."""
    with unavailable_on_driver_error():
        return await get_collection(ENROLLMENTS).count_documents({"course_id": ObjectId(course_id)})


async def enrollment_recent_members(
    course_id: str, *, limit: int, excluding_ops: Sequence[int] = ()
) -> list[EnrolledUser]:
    """The course's `limit` most recent members, oldest first: by operation id, then by
    insertion (`_id`); enrollments older than operations come first."""
    query: dict[str, Any] = {"course_id": ObjectId(course_id)}
    if excluding_ops:
        query["op"] = {"$nin": [Int64(op) for op in excluding_ops]}
    cursor = (
        get_collection(ENROLLMENTS)
        .find(query, {"user_id": 1, "username": 1, "_id": 0})
        .sort([("op", DESCENDING), ("_id", DESCENDING)])
        .limit(limit)
    )
    with unavailable_on_driver_error():
        members = [EnrolledUser(doc["user_id"], doc["username"]) async for doc in cursor]
    return members[::-1]


async def enrollment_op_counts(course_id: str) -> dict[int | None, int]:
    """How many enrollments of the course each operation has (None: none recorded)."""
    pipeline = [
        {"$match": {"course_id": ObjectId(course_id)}},
        {"$group": {"_id": "$op", "n": {"$sum": 1}}},
    ]
    with unavailable_on_driver_error():
        cursor = get_collection(ENROLLMENTS).aggregate(pipeline)
        if inspect.isawaitable(cursor):  # PyMongo's async API; Motor returns the cursor
            cursor = await cursor
        return {doc["_id"]: doc["n"] async for doc in cursor}
