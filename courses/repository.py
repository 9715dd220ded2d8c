"""Every MongoDB query for courses and enrollments.

This is the only module that speaks MongoDB's dialect for this domain. It takes and
returns plain values (`courses.documents`), and turns driver errors into domain errors:
duplicate keys become return values, connection failures a 503 (`ServiceUnavailable`).
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson import Decimal128, ObjectId
from pymongo import DESCENDING, InsertOne, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from courses.documents import Course, EnrolledUser, Enrollment
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
    }


# Courses


async def course_insert(course: Course) -> bool:
    """Insert the course; False if a course with its id exists (a chosen id, retried)."""
    doc = {
        "_id": ObjectId(course.id),
        "course_title": course.course_title,
        "course_description": course.course_description,
        "display_price": {"amount": Decimal128(course.amount), "currency": course.currency},
        "enrolled_users": [],
        "enrollers": 0,
        "created_at": course.created_at,
        "updated_at": course.updated_at,
    }
    try:
        with unavailable_on_driver_error():
            await get_collection(COURSES).insert_one(doc)
    except DuplicateKeyError:
        return False
    _remember_course(course.id)
    return True


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


async def course_add_enrolled(course_id: str, users: Sequence[EnrolledUser]) -> int | None:
    """Count `users` into the course in one atomic update; returns the new `enrollers`.

    The filter makes the update all-or-nothing per call: it matches only when none of
    `users` is in `enrolled_users` yet, so nobody is ever pushed or counted twice. Returns
    None when it did not match (no such course, or one of them is already there).
    """
    ids = [u.user_id for u in users]
    guard = {"$ne": ids[0]} if len(ids) == 1 else {"$nin": ids}
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one_and_update(
            {"_id": ObjectId(course_id), "enrolled_users.user_id": guard},
            {
                "$inc": {"enrollers": len(users)},
                "$push": {
                    "enrolled_users": {
                        "$each": [{"user_id": u.user_id, "username": u.username} for u in users]
                    }
                },
                "$set": {"updated_at": now()},
            },
            projection={"enrollers": 1, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )
    return None if doc is None else doc["enrollers"]


async def course_enrolled_user_ids(course_id: str) -> tuple[int, set[int]] | None:
    """(enrollers, user ids in enrolled_users); reads the whole array, for repair paths only."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)}, {"enrollers": 1, "enrolled_users.user_id": 1}
        )
    if doc is None:
        return None
    return doc["enrollers"], {u["user_id"] for u in doc.get("enrolled_users", [])}


async def course_replace_enrolled(
    course_id: str,
    *,
    expected_enrollers: int,
    expected_updated_at: datetime,
    users: Sequence[EnrolledUser],
) -> bool:
    """Set the counters to `users`, only if the course did not change since it was read."""
    with unavailable_on_driver_error():
        result = await get_collection(COURSES).update_one(
            {
                "_id": ObjectId(course_id),
                "enrollers": expected_enrollers,
                "updated_at": expected_updated_at,
            },
            {
                "$set": {
                    "enrolled_users": [
                        {"user_id": u.user_id, "username": u.username} for u in users
                    ],
                    "enrollers": len(users),
                    "updated_at": now(),
                }
            },
        )
    return result.matched_count == 1


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


async def enrollment_user_ids_among(course_id: str, user_ids: Sequence[int]) -> set[int]:
    """Which of `user_ids` are enrolled in the course; one `$in` query."""
    cursor = get_collection(ENROLLMENTS).find(
        {"course_id": ObjectId(course_id), "user_id": {"$in": list(user_ids)}},
        {"user_id": 1, "_id": 0},
    )
    with unavailable_on_driver_error():
        return {doc["user_id"] async for doc in cursor}


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


async def enrollment_users_for_course(course_id: str) -> list[EnrolledUser]:
    """Everyone enrolled in the course, in enrollment order: the source of truth."""
    cursor = (
        get_collection(ENROLLMENTS)
        .find({"course_id": ObjectId(course_id)}, {"user_id": 1, "username": 1, "_id": 0})
        .sort([("enrolled_at", 1), ("_id", 1)])
    )
    with unavailable_on_driver_error():
        return [EnrolledUser(doc["user_id"], doc["username"]) async for doc in cursor]
