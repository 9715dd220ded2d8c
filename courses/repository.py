"""Every MongoDB query for courses and enrollments.

This is the only module that speaks MongoDB's dialect for this domain. It takes and
returns plain values (`courses.documents`), and turns driver errors into domain errors:
duplicate keys become return values, connection failures a 503 (`ServiceUnavailable`).
"""

import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bson import Decimal128, Int64, ObjectId
from django.conf import settings
from pymongo import ASCENDING, DESCENDING, InsertOne, ReturnDocument, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from courses import membership
from courses.documents import (
    ACTIVE,
    COURSE_ARCHIVED,
    COURSE_OPEN,
    MEMBER_STATUSES,
    WAITLISTED,
    WITHDRAWN,
    Admission,
    Course,
    CourseCounters,
    CourseState,
    EnrolledUser,
    Enrollment,
    ExistingEnrollment,
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
# Enrollments per read of a streamed roster (CSV).
ROSTER_STREAM_BATCH = 1000
# A course as the API shows it: without its members (which can be many), its title index,
# and its ledger of applied operations (up to membership.APPLIED_OPS numbers, ~6.6 KiB:
# decoding it was 40 % of a course-list request's CPU, bench/README.md).
_LIST_PROJECTION = {"enrolled_users": 0, "title_words": 0, "applied": 0}


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
        capacity=doc.get("capacity"),
    )


_ADMISSION_PROJECTION = {
    "status": 1,
    "enrollment_opens_at": 1,
    "enrollment_closes_at": 1,
    "capacity": 1,
}
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
        op=doc.get("op"),
        due_at=doc.get("due_at"),
        completed_at=doc.get("completed_at"),
        withdrawn_at=doc.get("withdrawn_at"),
        waitlist_key=doc.get("waitlist_key"),
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
        "op": _int64(enrollment.op),
        "due_at": enrollment.due_at,
        "completed_at": enrollment.completed_at,
        "withdrawn_at": enrollment.withdrawn_at,
        "waitlist_key": _int64(enrollment.waitlist_key),
    }


def _int64(value: int | None) -> Int64 | None:
    return None if value is None else Int64(value)


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
        "applied": [],
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
        course.id,
        Admission(
            course.status, course.enrollment_opens_at, course.enrollment_closes_at, course.capacity
        ),
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
# counts a self-enrollment re-checks it atomically (see `course_apply_op`). The memory
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


async def course_state(course_id: str) -> CourseState | None:
    """Admission state, `applied` ledger and `enrollers`, read fresh; None if the course does
    not exist. For the rare path where applying an enrollment's operation missed."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)},
            {**_ADMISSION_PROJECTION, "applied": 1, "enrollers": 1},
        )
    if doc is None:
        course_forget(course_id)
        return None
    admission = _admission(doc)
    _remember_course(course_id, admission)
    return CourseState(admission, list(doc.get("applied") or []), doc["enrollers"])


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


@dataclass(frozen=True)
class Seats:
    """The seat guard of a counting write: the capacity its caller believes the course has
    (None: unlimited). The write applies only while that is still the capacity and the
    members fit: the seat is taken in the same atomic update that counts the member in."""

    capacity: int | None


def _seat_guard(capacity: int | None, count: int) -> dict[str, Any]:
    if capacity is None:
        return {"capacity": None}  # also matches documents older than the field
    return {"capacity": capacity, "enrollers": {"$lte": capacity - count}}


def _record(ops: Sequence[int]) -> dict[str, Any]:
    return {"$each": list(ops), "$sort": 1, "$slice": -membership.APPLIED_OPS}


async def course_apply_op(
    course_id: str,
    op: int,
    *,
    count: int,
    members: Sequence[EnrolledUser],
    self_enrollment_at: datetime | None = None,
    seats: Seats | None = None,
) -> int | None:
    """Count one membership operation into the course, once: `count` more members, and
    `members` (its newest, oldest first) appended to `enrolled_users`, which keeps the
    COURSE_EMBEDDED_MEMBERS most recent. Returns the new `enrollers`, or None when the
    update did not apply (no such course, `op` applied, retired or out of the window, or
    the course refuses). With `self_enrollment_at`, it applies only while the course takes
    self-enrollments at that moment (open, inside its window): the authoritative check,
    whatever a process's cache believes.

    One findAndModify whose server cost is bounded by the ledger and the embedded list,
    whatever the number of members.
    """
    query: dict[str, Any] = {"_id": ObjectId(course_id), **_op_guard([op])}
    if self_enrollment_at is not None:
        query.update(_admits_self_enrollment(self_enrollment_at))
    if seats is not None:
        query.update(_seat_guard(seats.capacity, count))
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one_and_update(
            query,
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


@dataclass(frozen=True)
class AfterLeave:
    enrollers: int
    capacity: int | None
    listed: list[int]  # user ids of `enrolled_users`, oldest first


async def course_apply_leave(course_id: str, op: int, user_id: int) -> AfterLeave | None:
    """Count one member out, once (the same ledger guard as `course_apply_op`): `enrollers`
    minus 1 and the user pulled from `enrolled_users`. None when `op` was applied (or retired,
    or is out of the window) or the course is gone."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one_and_update(
            {"_id": ObjectId(course_id), **_op_guard([op])},
            {
                "$inc": {"enrollers": -1},
                "$pull": {"enrolled_users": {"user_id": user_id}},
                "$push": {"applied": _record([op])},
                "$set": {"updated_at": now()},
            },
            projection={"enrollers": 1, "capacity": 1, "enrolled_users.user_id": 1, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )
    if doc is None:
        return None
    listed = [u["user_id"] for u in doc.get("enrolled_users", [])]
    return AfterLeave(doc["enrollers"], doc.get("capacity"), listed)


async def course_backfill_member(course_id: str, listed: Sequence[int]) -> bool:
    """After a member left the embedded list of a course with more members than it holds:
    put back the most recent member it lacks, at the front (the oldest end). Guarded so that
    concurrent backfills neither duplicate a member nor overfill the list."""
    keep = _embedded_members()
    found = (
        get_collection(ENROLLMENTS)
        .find(
            {
                "course_id": ObjectId(course_id),
                "status": {"$in": list(MEMBER_STATUSES)},
                "user_id": {"$nin": list(listed)},
            },
            {"user_id": 1, "username": 1, "_id": 0},
        )
        .sort([("op", DESCENDING), ("_id", DESCENDING)])
        .limit(1)
    )
    with unavailable_on_driver_error():
        docs = [doc async for doc in found]
        if not docs:
            return False
        user = EnrolledUser(docs[0]["user_id"], docs[0]["username"])
        result = await get_collection(COURSES).update_one(
            {
                "_id": ObjectId(course_id),
                "enrolled_users.user_id": {"$ne": user.user_id},
                f"enrolled_users.{keep - 1}": {"$exists": False},
            },
            {"$push": {"enrolled_users": {"$each": [_member(user)], "$position": 0}}},
        )
    return result.modified_count == 1


async def course_ledger(course_id: str) -> list[int] | None:
    """The course's `applied` ledger (ascending), or None if there is no such course."""
    with unavailable_on_driver_error():
        doc = await get_collection(COURSES).find_one(
            {"_id": ObjectId(course_id)}, {"applied": 1, "_id": 0}
        )
    if doc is None:
        course_forget(course_id)
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


async def enrollment_ops_among(course_id: str, user_ids: Sequence[int]) -> dict[int, int | None]:
    """Which of `user_ids` are enrolled in the course, with the operation that counts each
    in (None for enrollments older than operations); one `$in` query."""
    cursor = get_collection(ENROLLMENTS).find(
        {"course_id": ObjectId(course_id), "user_id": {"$in": list(user_ids)}},
        {"user_id": 1, "op": 1, "_id": 0},
    )
    with unavailable_on_driver_error():
        return {doc["user_id"]: doc.get("op") async for doc in cursor}


# Statuses whose deadline a repeat assignment may move (docs/api.md, "Due dates").
DUE_AT_MOVABLE = ("active", "waitlisted")


async def enrollment_existing_among(
    course_id: str, user_ids: Sequence[int]
) -> dict[int, ExistingEnrollment]:
    """`enrollment_ops_among` with the status and deadline too, for assignments; one `$in`."""
    cursor = get_collection(ENROLLMENTS).find(
        {"course_id": ObjectId(course_id), "user_id": {"$in": list(user_ids)}},
        {"user_id": 1, "op": 1, "status": 1, "due_at": 1, "_id": 0},
    )
    with unavailable_on_driver_error():
        return {
            doc["user_id"]: ExistingEnrollment(doc.get("op"), doc["status"], doc.get("due_at"))
            async for doc in cursor
        }


async def enrollment_set_due_at(
    course_id: str, user_ids_by_due_at: dict[datetime, list[int]]
) -> None:
    """Move the deadline of these users' enrollments (active or waitlisted ones only); one
    bulk write whatever the number of users or distinct deadlines."""
    if not user_ids_by_due_at:
        return
    collection = await _enrollments_for_write()
    updates = [
        UpdateMany(
            {
                "course_id": ObjectId(course_id),
                "user_id": {"$in": user_ids},
                "status": {"$in": list(DUE_AT_MOVABLE)},
            },
            {"$set": {"due_at": due_at}},
        )
        for due_at, user_ids in user_ids_by_due_at.items()
    ]
    with unavailable_on_driver_error():
        await collection.bulk_write(updates, ordered=False)


async def enrollment_set_due_at_one(
    course_id: str, user_id: int, due_at: datetime
) -> Enrollment | None:
    """Move one enrollment's deadline (if active or waitlisted); the enrollment as it now
    is, None when it is in another status."""
    collection = await _enrollments_for_write()
    with unavailable_on_driver_error():
        doc = await collection.find_one_and_update(
            {
                "course_id": ObjectId(course_id),
                "user_id": user_id,
                "status": {"$in": list(DUE_AT_MOVABLE)},
            },
            {"$set": {"due_at": due_at}},
            return_document=ReturnDocument.AFTER,
        )
    return None if doc is None else _enrollment(doc)


@dataclass(frozen=True)
class Revival:
    """A withdrawn enrollment an assignment brings back: to `active` under `op`, or to the
    waitlist under `waitlist_key` (`op` None), with the assignment's `changes` (source,
    assigned_by, username, due_at). `seen_op` is the withdrawal's operation as read."""

    user_id: int
    seen_op: int | None
    op: int | None
    waitlist_key: int | None
    changes: dict[str, Any]


async def enrollment_revive(course_id: str, revivals: Sequence[Revival]) -> int:
    """Bring withdrawn enrollments back in one bulk write; each applies only if the
    enrollment is still withdrawn under the operation read (a concurrent re-enrollment
    wins). Returns how many were brought back."""
    if not revivals:
        return 0
    collection = await _enrollments_for_write()
    updates = [
        UpdateOne(
            {
                "course_id": ObjectId(course_id),
                "user_id": r.user_id,
                "status": WITHDRAWN,
                "op": _int64(r.seen_op),
            },
            {
                "$set": {
                    **r.changes,
                    "status": ACTIVE if r.op is not None else WAITLISTED,
                    "op": _int64(r.op),
                    "waitlist_key": _int64(r.waitlist_key),
                    "withdrawn_at": None,
                }
            },
        )
        for r in revivals
    ]
    with unavailable_on_driver_error():
        result = await collection.bulk_write(updates, ordered=False)
    return result.modified_count


async def enrollment_demote(course_id: str, op: int, keys: Sequence[tuple[int, int]]) -> int:
    """Move active enrollments still under the (unapplied) operation `op` to the waitlist,
    each `(user_id, waitlist_key)`: the seats a bulk assignment could not get after all.
    One bulk write; returns how many moved."""
    if not keys:
        return 0
    collection = await _enrollments_for_write()
    updates = [
        UpdateOne(
            {
                "course_id": ObjectId(course_id),
                "user_id": user_id,
                "status": ACTIVE,
                "op": Int64(op),
            },
            {"$set": {"status": WAITLISTED, "op": None, "waitlist_key": Int64(key)}},
        )
        for user_id, key in keys
    ]
    with unavailable_on_driver_error():
        result = await collection.bulk_write(updates, ordered=False)
    return result.modified_count


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


@dataclass(frozen=True)
class EnrollmentFilter:
    """`?status=` (one of ENROLLMENT_STATUSES, or None: all), `?overdue=true` (active with
    `due_at` before `moment`) and, on a roster, `?search=` (username prefix, any case)."""

    status: str | None = None
    overdue_at: datetime | None = None
    search: str = ""

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.overdue_at is not None:
            query["status"] = ACTIVE if self.status in (None, ACTIVE) else "-"  # "-": none
            query["due_at"] = {"$lt": self.overdue_at}
        elif self.status is not None:
            query["status"] = self.status
        if self.search:
            query["username"] = {"$regex": "^" + re.escape(self.search), "$options": "i"}
        return query


EVERY_ENROLLMENT = EnrollmentFilter()


async def enrollment_count_for_user(
    user_id: int, where: EnrollmentFilter = EVERY_ENROLLMENT
) -> int:
    with unavailable_on_driver_error():
        return await get_collection(ENROLLMENTS).count_documents(
            {"user_id": user_id, **where.query()}
        )


async def enrollment_page_for_user(
    user_id: int, *, limit: int, offset: int, where: EnrollmentFilter = EVERY_ENROLLMENT
) -> list[Enrollment]:
    cursor = (
        get_collection(ENROLLMENTS)
        .find({"user_id": user_id, **where.query()})
        .sort([("enrolled_at", DESCENDING), ("_id", DESCENDING)])
        .skip(offset)
        .limit(limit)
    )
    with unavailable_on_driver_error():
        return [_enrollment(doc) async for doc in cursor]


async def enrollment_get(enrollment_id: str) -> Enrollment | None:
    with unavailable_on_driver_error():
        doc = await get_collection(ENROLLMENTS).find_one({"_id": ObjectId(enrollment_id)})
    return None if doc is None else _enrollment(doc)


_INT64_FIELDS = ("op", "waitlist_key")


async def enrollment_transition(expected: Enrollment, changes: dict[str, Any]) -> Enrollment | None:
    """Change an enrollment only if it is still as `expected` was read (its status,
    operation and waitlist key): one conditional write, so of two concurrent transitions
    from the same state exactly one applies. Returns the enrollment as it now is, or None
    when it had changed (the caller re-reads and decides again)."""
    update = {k: _int64(v) if k in _INT64_FIELDS else v for k, v in changes.items()}
    with unavailable_on_driver_error():
        doc = await get_collection(ENROLLMENTS).find_one_and_update(
            {
                "_id": ObjectId(expected.id),
                "status": expected.status,
                "op": _int64(expected.op),
                "waitlist_key": _int64(expected.waitlist_key),
            },
            {"$set": update},
            return_document=ReturnDocument.AFTER,
        )
    return None if doc is None else _enrollment(doc)


async def enrollment_waitlist_heads(course_id: str, *, limit: int) -> list[Enrollment]:
    """The first `limit` of the course's waitlist, in FIFO order (smallest key first)."""
    cursor = (
        get_collection(ENROLLMENTS)
        .find({"course_id": ObjectId(course_id), "status": WAITLISTED})
        .sort([("waitlist_key", ASCENDING)])
        .limit(limit)
    )
    with unavailable_on_driver_error():
        return [_enrollment(doc) async for doc in cursor]


async def enrollment_waitlist_position(course_id: str, key: int) -> int:
    """1-based FIFO position of the waitlisted enrollment with `key`: how many waitlisted
    enrollments of the course have a key up to it (positions never have gaps)."""
    with unavailable_on_driver_error():
        return await get_collection(ENROLLMENTS).count_documents(
            {
                "course_id": ObjectId(course_id),
                "status": WAITLISTED,
                "waitlist_key": {"$lte": Int64(key)},
            }
        )


async def enrollment_roster_page(
    course_id: str, *, where: EnrollmentFilter, after: str | None, limit: int
) -> list[Enrollment]:
    """One roster page, oldest first (by `_id`, which orders by creation), after the
    enrollment id `after`: a cursor, so page N costs what page 1 costs."""
    query: dict[str, Any] = {"course_id": ObjectId(course_id), **where.query()}
    if after is not None:
        query["_id"] = {"$gt": ObjectId(after)}
    cursor = get_collection(ENROLLMENTS).find(query).sort([("_id", ASCENDING)]).limit(limit)
    with unavailable_on_driver_error():
        return [_enrollment(doc) async for doc in cursor]


async def enrollment_roster_stream(
    course_id: str, *, where: EnrollmentFilter
) -> AsyncIterator[list[Enrollment]]:
    """The whole roster in batches, oldest first: each batch one indexed range read after
    the last id seen, so memory stays one batch whatever the course's size."""
    batch = ROSTER_STREAM_BATCH
    after = None
    while True:
        page = await enrollment_roster_page(course_id, where=where, after=after, limit=batch)
        if page:
            yield page
        if len(page) < batch:
            return
        after = page[-1].id


async def enrollment_status_counts(course_id: str, overdue_at: datetime) -> tuple[dict, int]:
    """(count per status, overdue count) of one course: a `$group` over the course's
    range of the (course_id, status, due_at) index, and an indexed count of the active
    enrollments due before `overdue_at`, sent concurrently."""
    pipeline = [
        {"$match": {"course_id": ObjectId(course_id)}},
        {"$group": {"_id": "$status", "n": {"$sum": 1}}},
    ]
    enrollments = get_collection(ENROLLMENTS)
    with unavailable_on_driver_error():
        result = await cursor(enrollments.aggregate(pipeline))
        counts = {doc["_id"]: doc["n"] async for doc in result}
        overdue = await enrollments.count_documents(
            {"course_id": ObjectId(course_id), "status": ACTIVE, "due_at": {"$lt": overdue_at}}
        )
    return counts, overdue


async def enrollment_recent_members(
    course_id: str, *, limit: int, excluding_ops: Sequence[int] = ()
) -> list[EnrolledUser]:
    """The course's `limit` most recent members, oldest first: by operation id, then by
    insertion (`_id`); enrollments older than operations come first."""
    query: dict[str, Any] = {
        "course_id": ObjectId(course_id),
        "status": {"$in": list(MEMBER_STATUSES)},
    }
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


async def enrollment_waitlist_retired(course_id: str, ops: Sequence[int]) -> int:
    """Repair: active enrollments still under a retired single join (their request died
    after finding the course full, before waitlisting them) join the waitlist, keyed by
    that operation as the request would have done. Returns how many."""
    found = get_collection(ENROLLMENTS).find(
        {
            "course_id": ObjectId(course_id),
            "status": ACTIVE,
            "op": {"$in": [Int64(op) for op in ops]},
        },
        {"op": 1},
    )
    moved = 0
    with unavailable_on_driver_error():
        async for doc in found:
            result = await get_collection(ENROLLMENTS).update_one(
                {"_id": doc["_id"], "status": ACTIVE, "op": doc["op"]},
                {"$set": {"status": WAITLISTED, "op": None, "waitlist_key": doc["op"]}},
            )
            moved += result.modified_count
    return moved


async def enrollment_waitlist_keys_fill(course_id: str) -> int:
    """Repair: a waitlisted enrollment without a FIFO key (written by hand or by an older
    version) gets one after every existing key, in `_id` order. Returns how many."""
    found = (
        get_collection(ENROLLMENTS)
        .find(
            {"course_id": ObjectId(course_id), "status": WAITLISTED, "waitlist_key": None},
            {"_id": 1},
        )
        .sort([("_id", ASCENDING)])
    )
    filled = 0
    with unavailable_on_driver_error():
        async for doc in found:
            result = await get_collection(ENROLLMENTS).update_one(
                {"_id": doc["_id"], "status": WAITLISTED, "waitlist_key": None},
                {"$set": {"waitlist_key": Int64(membership.new_op(bulk=False)), "op": None}},
            )
            filled += result.modified_count
    return filled


async def enrollment_op_counts(
    course_id: str, statuses: Sequence[str] = MEMBER_STATUSES
) -> dict[int | None, int]:
    """How many enrollments of the course in `statuses` each operation has (None: none
    pending or recorded)."""
    pipeline = [
        {"$match": {"course_id": ObjectId(course_id), "status": {"$in": list(statuses)}}},
        {"$group": {"_id": "$op", "n": {"$sum": 1}}},
    ]
    with unavailable_on_driver_error():
        result = await cursor(get_collection(ENROLLMENTS).aggregate(pipeline))
        return {doc["_id"]: doc["n"] async for doc in result}
