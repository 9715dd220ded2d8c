"""Every MongoDB query for courses and enrollments.

This is the only module that speaks MongoDB's dialect for this domain. It takes and
returns plain values (`courses.documents`), and turns driver errors into domain errors:
duplicate keys become return values, connection failures a 503 (`ServiceUnavailable`).
"""

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson import Decimal128, ObjectId
from pymongo import ASCENDING, DESCENDING, InsertOne, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from common.errors import CourseFull
from courses.documents import (
    COURSE_ARCHIVED,
    COURSE_OPEN,
    Admission,
    Course,
    EnrolledUser,
    Enrollment,
    millisecond_precision,
)
from mongo.client import (
    cursor,
    get_collection,
    get_db,
    on_server_change,
    unavailable_on_driver_error,
)
from mongo.indexes import (
    COURSES,
    ENROLLMENT_UNIQUE,
    ENROLLMENTS,
    duplicate_keys,
    ensure_indexes,
    ensure_indexes_once,
)

DUPLICATE_KEY = 11000
# mongod refusing a document over 16 MiB: the result of an update (17419), or any BSON
# object (BSONObjectTooLarge).
DOCUMENT_TOO_LARGE = {17419, 10334}
_LIST_PROJECTION = {"enrolled_users": 0, "title_words": 0}


def now() -> datetime:
    """The current time at MongoDB's millisecond precision, so a stored time reads back equal."""
    return millisecond_precision(datetime.now(UTC))


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
        # Documents written before version 2 lack these: they read as the defaults.
        capacity=doc.get("capacity"),
        enrollment_opens_at=doc.get("enrollment_opens_at"),
        enrollment_closes_at=doc.get("enrollment_closes_at"),
        status=doc.get("status", COURSE_OPEN),
    )


def _admission(doc: dict[str, Any]) -> Admission:
    return Admission(
        status=doc.get("status", COURSE_OPEN),
        enrollment_opens_at=doc.get("enrollment_opens_at"),
        enrollment_closes_at=doc.get("enrollment_closes_at"),
    )


_ADMISSION_PROJECTION = {"status": 1, "enrollment_opens_at": 1, "enrollment_closes_at": 1}
_WORD = re.compile(r"\w+")


def title_words(text: str) -> list[str]:
    """The case-folded words of a title (or a search), as stored in `title_words`."""
    return list(dict.fromkeys(_WORD.findall(text.casefold())))


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
        "capacity": course.capacity,
        "enrollment_opens_at": course.enrollment_opens_at,
        "enrollment_closes_at": course.enrollment_closes_at,
        "status": course.status,
        "title_words": title_words(course.course_title),
    }
    try:
        with unavailable_on_driver_error():
            await get_collection(COURSES).insert_one(doc)
    except DuplicateKeyError:
        return False
    _remember_course(
        course.id, Admission(course.status, course.enrollment_opens_at, course.enrollment_closes_at)
    )
    return True


async def course_get(course_id: str, *, with_enrolled_users: bool = False) -> Course | None:
    projection = None if with_enrolled_users else _LIST_PROJECTION
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one({"_id": ObjectId(course_id)}, projection)
    if doc is None:
        course_forget(course_id)
        return None
    return _course(doc)


# Courses are never deleted by the service, so a course seen to exist can skip the
# existence query on the hot enroll path (one of its three round trips). Only positive
# answers are kept, per database, oldest forgotten first beyond the bound, each with the
# course's admission state (status, window) as last seen by this process. That state is
# only a hint — another process may have archived the course since — so the write that
# counts a self-enrollment re-checks it atomically (see `course_add_enrolled`). The memory
# is of one server and does not outlive what it remembers: a course can still vanish behind
# the service (an operator's delete, a MongoDB restored from an older snapshot or started
# without its data), so an entry expires after KNOWN_COURSES_TTL_SECONDS, all are
# forgotten when the driver sees the server change, and a read that finds the course
# missing forgets it. Writes never rely on it alone: see `enrollment_create_in_course`
# and `assignment_bulk_create`, which take back what they wrote for a missing course.
_known_courses: dict[tuple[str, str], tuple[float, Admission]] = {}
KNOWN_COURSES_MAX = 10_000
KNOWN_COURSES_TTL_SECONDS = 60.0


def _remember_course(course_id: str, admission: Admission) -> None:
    key = (get_db().name, course_id)
    _known_courses.pop(key, None)  # re-inserted last: the bound drops the oldest first
    _known_courses[key] = (time.monotonic(), admission)
    if len(_known_courses) > KNOWN_COURSES_MAX:
        del _known_courses[next(iter(_known_courses))]


def course_forget(course_id: str) -> None:
    """The course was found missing: stop vouching for it."""
    _known_courses.pop((get_db().name, course_id), None)


def courses_forget_all() -> None:
    _known_courses.clear()


on_server_change(courses_forget_all)


async def course_admission(course_id: str, *, fresh: bool = False) -> Admission | None:
    """The course's admission state, None if it does not exist; `fresh` bypasses the
    process's memory of known courses."""
    key = (get_db().name, course_id)
    if not fresh:
        known = _known_courses.get(key)
        if known is not None and time.monotonic() - known[0] < KNOWN_COURSES_TTL_SECONDS:
            return known[1]
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)}, _ADMISSION_PROJECTION
        )
    if doc is None:
        _known_courses.pop(key, None)
        return None
    admission = _admission(doc)
    _remember_course(course_id, admission)
    return admission


async def course_exists(course_id: str, *, fresh: bool = False) -> bool:
    """Whether the course exists; `fresh` bypasses the process's memory of known courses."""
    return await course_admission(course_id, fresh=fresh) is not None


async def course_admission_counting(course_id: str, user_id: int) -> tuple[Admission, bool] | None:
    """(admission state, whether `user_id` is counted in `enrolled_users`), read fresh;
    None if the course does not exist. For the rare path where counting a user failed."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)},
            {**_ADMISSION_PROJECTION, "enrolled_users": {"$elemMatch": {"user_id": user_id}}},
        )
    if doc is None:
        _known_courses.pop((get_db().name, course_id), None)
        return None
    admission = _admission(doc)
    _remember_course(course_id, admission)
    return admission, bool(doc.get("enrolled_users"))


async def course_update(course_id: str, changes: dict[str, Any]) -> Course | None:
    """Apply `changes` (Course field names; `amount`/`currency` both or neither) in one
    atomic update and return the course as it now is.

    A window bound changed alone is checked against the stored other bound in the same
    update's filter, so two concurrent PATCHes cannot leave `opens >= closes`. None when
    the course does not exist or that check failed (the caller tells which apart).
    """
    update: dict[str, Any] = {k: v for k, v in changes.items() if k not in ("amount", "currency")}
    if "amount" in changes:
        update["display_price"] = {
            "amount": Decimal128(changes["amount"]),
            "currency": changes["currency"],
        }
    if "course_title" in changes:
        update["title_words"] = title_words(changes["course_title"])
    update["updated_at"] = now()
    query: dict[str, Any] = {"_id": ObjectId(course_id)}
    opens, closes = changes.get("enrollment_opens_at"), changes.get("enrollment_closes_at")
    if opens is not None and "enrollment_closes_at" not in changes:
        query["enrollment_closes_at"] = {"$not": {"$lte": opens}}
    if closes is not None and "enrollment_opens_at" not in changes:
        query["enrollment_opens_at"] = {"$not": {"$gte": closes}}
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one_and_update(
            query,
            {"$set": update},
            projection=_LIST_PROJECTION,
            return_document=ReturnDocument.AFTER,
        )
    if doc is None:
        return None
    # This process forgets the old state at once; other processes hold a hint that the
    # counting write re-checks (see _known_courses).
    _remember_course(course_id, _admission(doc))
    return _course(doc)


async def course_enrollers(course_id: str) -> int | None:
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one({"_id": ObjectId(course_id)}, {"enrollers": 1})
    if doc is None:
        course_forget(course_id)
        return None
    return doc["enrollers"]


def _course_filter(status: str, words: Sequence[str]) -> dict[str, Any]:
    """The list filter: `status` is "open", "archived" or "all"; every word of `words` must
    start a word of the title. Words are matched as anchored, escaped prefixes of the
    indexed `title_words` (index bounds, no scan); course documents written before that
    field existed are matched on their title, case-insensitively."""
    query: dict[str, Any] = {}
    if status == COURSE_OPEN:
        query["status"] = {"$ne": COURSE_ARCHIVED}  # documents without a status are open
    elif status == COURSE_ARCHIVED:
        query["status"] = COURSE_ARCHIVED
    if words:
        prefixes = [{"title_words": {"$regex": "^" + re.escape(w)}} for w in words]
        legacy = [
            {"course_title": {"$regex": r"(?:^|\W)" + re.escape(w), "$options": "i"}} for w in words
        ]
        query["$or"] = [
            {"$and": prefixes},
            {"title_words": {"$exists": False}, "$and": legacy},
        ]
    return query


_ORDERINGS = {
    "created_at": "created_at",
    "course_title": "course_title",
    "enrollers": "enrollers",
}


def _course_sort(ordering: str) -> list[tuple[str, int]]:
    direction = DESCENDING if ordering.startswith("-") else ASCENDING
    # _id breaks ties, so pages never repeat or skip courses with equal keys.
    return [(_ORDERINGS[ordering.lstrip("-")], direction), ("_id", direction)]


async def course_count(*, status: str = "all", words: Sequence[str] = ()) -> int:
    """How many courses the list filter matches."""
    courses = get_collection(COURSES)
    with unavailable_on_driver_error():
        if words or status == COURSE_ARCHIVED:
            return await courses.count_documents(_course_filter(status, words))
        # The unfiltered count comes from collection metadata (the `count` command), not a
        # scan through an aggregation; on a replica set it is exact except after an unclean
        # shutdown. The open courses are that minus the archived ones (an indexed count).
        total = await courses.estimated_document_count()
        if status == COURSE_OPEN:
            total -= await courses.count_documents({"status": COURSE_ARCHIVED})
        return max(total, 0)


async def course_page(
    *,
    limit: int,
    offset: int,
    status: str = "all",
    words: Sequence[str] = (),
    ordering: str = "-created_at",
) -> list[Course]:
    """One page of the list, without `enrolled_users` (which can be large)."""
    cursor = (
        get_collection(COURSES)
        .find(_course_filter(status, words), _LIST_PROJECTION)
        .sort(_course_sort(ordering))
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


def _admits_self_enrollment(moment: datetime) -> dict[str, Any]:
    """Filter conditions under which a course takes a self-enrollment at `moment`: not
    archived, and inside its window [opens, closes). Missing fields (documents older than
    these fields) and nulls pass: `$not` of a comparison matches them."""
    return {
        "status": {"$ne": COURSE_ARCHIVED},
        "enrollment_opens_at": {"$not": {"$gt": moment}},
        "enrollment_closes_at": {"$not": {"$lte": moment}},
    }


async def course_add_enrolled(
    course_id: str, users: Sequence[EnrolledUser], *, self_enrollment_at: datetime | None = None
) -> int | None:
    """Count `users` into the course in one atomic update; returns the new `enrollers`.

    The filter makes the update all-or-nothing per call: it matches only when none of
    `users` is in `enrolled_users` yet, so nobody is ever pushed or counted twice. With
    `self_enrollment_at`, it also matches only while the course takes self-enrollments at
    that moment (open, inside its window): the authoritative check, whatever a process's
    cache believes. Returns None when it did not match (no such course, one of them is
    already there, or the course refuses); raises CourseFull when the course document
    cannot grow by `users` (MongoDB's 16 MiB limit).
    """
    ids = [u.user_id for u in users]
    guard = {"$ne": ids[0]} if len(ids) == 1 else {"$nin": ids}
    query: dict[str, Any] = {"_id": ObjectId(course_id), "enrolled_users.user_id": guard}
    if self_enrollment_at is not None:
        query.update(_admits_self_enrollment(self_enrollment_at))
    with unavailable_on_driver_error(), _course_full_on_too_large():
        doc = await get_collection(COURSES).find_one_and_update(
            query,
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


@contextmanager
def _course_full_on_too_large() -> Iterator[None]:
    try:
        yield
    except OperationFailure as exc:
        if exc.code in DOCUMENT_TOO_LARGE:
            raise CourseFull() from exc
        raise


async def course_enrolled_user_ids(course_id: str) -> tuple[int, set[int]] | None:
    """(enrollers, user ids in enrolled_users); reads the whole array, for repair paths only."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)}, {"enrollers": 1, "enrolled_users.user_id": 1}
        )
    if doc is None:
        course_forget(course_id)
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


async def enrollment_find(course_id: str, user_id: int) -> Enrollment | None:
    """The user's enrollment in the course, if any (the unique index's key)."""
    with unavailable_on_driver_error():
        doc = await get_collection(ENROLLMENTS).find_one(
            {"course_id": ObjectId(course_id), "user_id": user_id}
        )
    return None if doc is None else _enrollment(doc)


async def enrollment_delete(enrollment_id: str) -> None:
    with unavailable_on_driver_error():
        await get_collection(ENROLLMENTS).delete_one({"_id": ObjectId(enrollment_id)})


async def enrollment_delete_for_users(course_id: str, user_ids: Sequence[int]) -> None:
    """Take back the enrollments of `user_ids` in the course (one `$in` delete)."""
    with unavailable_on_driver_error():
        await get_collection(ENROLLMENTS).delete_many(
            {"course_id": ObjectId(course_id), "user_id": {"$in": list(user_ids)}}
        )


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


# Repairs (reconcile_enrollments): full scans, never on a request path.

REPAIR_CHUNK = 1000


async def course_ids_existing(course_ids: Iterable[str]) -> set[str]:
    """Which of `course_ids` exist; `$in` queries of REPAIR_CHUNK ids."""
    ids = sorted(set(course_ids))
    found: set[str] = set()
    for start in range(0, len(ids), REPAIR_CHUNK):
        chunk = [ObjectId(cid) for cid in ids[start : start + REPAIR_CHUNK]]
        cursor = get_collection(COURSES).find({"_id": {"$in": chunk}}, {"_id": 1})
        with unavailable_on_driver_error():
            found |= {str(doc["_id"]) async for doc in cursor}
    return found


async def enrollment_course_ids() -> set[str]:
    """Every course id that some enrollment names."""
    with unavailable_on_driver_error():
        return {str(cid) for cid in await get_collection(ENROLLMENTS).distinct("course_id")}


async def enrollment_count_by_course(course_ids: Iterable[str]) -> dict[str, int]:
    ids = [ObjectId(cid) for cid in set(course_ids)]
    if not ids:
        return {}
    pipeline = [
        {"$match": {"course_id": {"$in": ids}}},
        {"$group": {"_id": "$course_id", "n": {"$sum": 1}}},
    ]
    with unavailable_on_driver_error():
        result = await cursor(get_collection(ENROLLMENTS).aggregate(pipeline))
        return {str(doc["_id"]): doc["n"] async for doc in result}


async def enrollment_delete_for_courses(course_ids: Iterable[str]) -> int:
    ids = [ObjectId(cid) for cid in set(course_ids)]
    if not ids:
        return 0
    with unavailable_on_driver_error():
        result = await get_collection(ENROLLMENTS).delete_many({"course_id": {"$in": ids}})
    return result.deleted_count


async def enrollment_delete_many(enrollment_ids: Sequence[str]) -> int:
    deleted = 0
    for start in range(0, len(enrollment_ids), REPAIR_CHUNK):
        chunk = [ObjectId(eid) for eid in enrollment_ids[start : start + REPAIR_CHUNK]]
        with unavailable_on_driver_error():
            result = await get_collection(ENROLLMENTS).delete_many({"_id": {"$in": chunk}})
        deleted += result.deleted_count
    return deleted


async def enrollment_duplicates() -> dict[tuple[str, int], list[str]]:
    """Every (course, user) pair with more than one enrollment: its enrollment ids, oldest
    first (by enrolled_at, then _id, whose timestamp prefix orders equal times)."""
    groups = await duplicate_keys(get_db(), ENROLLMENT_UNIQUE)
    users_by_course: dict[Any, list[int]] = {}
    for group in groups:
        users_by_course.setdefault(group["_id"]["course_id"], []).append(group["_id"]["user_id"])
    pairs: dict[tuple[str, int], list[str]] = {}
    for course_id, user_ids in users_by_course.items():
        for start in range(0, len(user_ids), REPAIR_CHUNK):
            found = (
                get_collection(ENROLLMENTS)
                .find(
                    {
                        "course_id": course_id,
                        "user_id": {"$in": user_ids[start : start + REPAIR_CHUNK]},
                    },
                    {"user_id": 1},
                )
                .sort([("user_id", 1), ("enrolled_at", 1), ("_id", 1)])
            )
            with unavailable_on_driver_error():
                async for doc in found:
                    pairs.setdefault((str(course_id), doc["user_id"]), []).append(str(doc["_id"]))
    return pairs


async def enrollment_index_ensure() -> bool:
    """Create the indexes now; False when duplicate enrollments keep the unique one out."""
    try:
        with unavailable_on_driver_error():
            await ensure_indexes(get_db())
    except DuplicateKeyError:
        return False
    return True
