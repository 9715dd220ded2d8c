"""Every MongoDB index the service relies on, declared in one place.

The unique `(course_id, user_id)` index is what makes enrollment exactly-once, so writes
that rely on it first make sure it exists (`ensure_indexes_once`). What this process
knows about that is a memory of one server: it is forgotten whenever the driver sees the
server change (a restart, possibly without its data; a failover) and after
`INDEXES_RECHECK_SECONDS` in any case.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from common.errors import ServiceUnavailable
from mongo.client import cursor, get_db, on_server_change, unavailable_on_driver_error

logger = logging.getLogger(__name__)

COURSES = "courses"
ENROLLMENTS = "enrollments"
IDEMPOTENCY_KEYS = "idempotency_keys"
ASSIGNMENTS = "assignments"
ASSIGNMENT_RESULTS = "assignment_results"
# Assignment jobs (courses/job_repository.py): the job documents, their input identifiers
# in chunks, and their per-user results in chunks.
ASSIGNMENT_JOBS = "assignment_jobs"
JOB_CHUNKS = "assignment_job_chunks"
JOB_RESULTS = "assignment_job_results"
JOB_USERS = "assignment_job_users"

# An ensured index is re-verified (one no-op createIndexes) at least this often, even if
# no server change was seen.
INDEXES_RECHECK_SECONDS = 60.0
# After duplicates made creating a unique index fail, writes are refused for this long
# without asking again (a failing createIndexes scans the whole collection).
INDEXES_RETRY_SECONDS = 5.0

DEDUPE_HINT = "run `python manage.py reconcile_enrollments --dedupe`"


@dataclass(frozen=True)
class Index:
    collection: str
    keys: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)


ENROLLMENT_UNIQUE = Index(
    ENROLLMENTS,
    [("course_id", ASCENDING), ("user_id", ASCENDING)],
    {"unique": True, "name": "course_user_unique"},
)

INDEXES = [
    # The guard of "exactly once": a second enrollment of a user in a course cannot exist.
    ENROLLMENT_UNIQUE,
    # A course's members by the operation that counted them in: adopting a retired bulk
    # operation's enrollments and reconciling the most recent members (courses.membership).
    Index(
        ENROLLMENTS,
        [("course_id", ASCENDING), ("op", ASCENDING), ("_id", ASCENDING)],
        {"name": "course_op"},
    ),
    # The roster, oldest first by cursor (`_id`), whole or by status; the report's `$group`
    # by status walks the second one's course range.
    Index(ENROLLMENTS, [("course_id", ASCENDING), ("_id", ASCENDING)], {"name": "course_roster"}),
    Index(
        ENROLLMENTS,
        [("course_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)],
        {"name": "course_status_roster"},
    ),
    # The waitlist in FIFO order (its head, positions); partial: only waitlisted enrollments.
    Index(
        ENROLLMENTS,
        [("course_id", ASCENDING), ("status", ASCENDING), ("waitlist_key", ASCENDING)],
        {"name": "course_waitlist", "partialFilterExpression": {"status": "waitlisted"}},
    ),
    # Overdue enrollments of a course (active, due before now): the roster's and report's.
    Index(
        ENROLLMENTS,
        [("course_id", ASCENDING), ("status", ASCENDING), ("due_at", ASCENDING)],
        {"name": "course_overdue"},
    ),
    # A user's own enrollments, newest first.
    Index(
        ENROLLMENTS,
        [("user_id", ASCENDING), ("enrolled_at", DESCENDING)],
        {"name": "user_enrolled_at"},
    ),
    # The catalogue, newest first.
    Index(COURSES, [("created_at", DESCENDING)], {"name": "created_at"}),
    # The catalogue's other orderings (`?ordering=`).
    Index(COURSES, [("course_title", ASCENDING)], {"name": "course_title"}),
    Index(COURSES, [("enrollers", DESCENDING)], {"name": "enrollers"}),
    # `?search=`: anchored prefixes of the case-folded title words (a multikey index).
    Index(COURSES, [("title_words", ASCENDING)], {"name": "title_words"}),
    # How many courses are archived: the open catalogue's count is the total minus these.
    Index(COURSES, [("status", ASCENDING)], {"name": "status"}),
    # Idempotency-Key answers are forgotten at `expires_at` (24 h after the first request).
    # The TTL monitor deletes them lazily (about once a minute), so readers also treat a
    # record past `expires_at` as absent; the claim itself relies only on the unique `_id`.
    Index(
        IDEMPOTENCY_KEYS,
        [("expires_at", ASCENDING)],
        {"expireAfterSeconds": 0, "name": "expires_at_ttl"},
    ),
    # Stored assignment reports, newest first: all of them, or one course's.
    Index(ASSIGNMENTS, [("created_at", DESCENDING), ("_id", DESCENDING)], {"name": "created_at"}),
    Index(
        ASSIGNMENTS,
        [("course_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
        {"name": "course_created_at"},
    ),
    # A stored report's results, in chunks of ASSIGNMENT_RESULTS_CHUNK, in order.
    Index(
        ASSIGNMENT_RESULTS,
        [("assignment_id", ASCENDING), ("seq", ASCENDING)],
        {"unique": True, "name": "assignment_seq_unique"},
    ),
    # A course's assignment jobs, newest first (the console's job list).
    Index(
        ASSIGNMENT_JOBS,
        [("course_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
        {"name": "course_created_at"},
    ),
    # A job's input and results, one document per chunk: a chunk is written once (a re-run
    # replaces it) and results are paged in chunk order.
    Index(
        JOB_CHUNKS,
        [("job_id", ASCENDING), ("chunk", ASCENDING)],
        {"unique": True, "name": "job_chunk"},
    ),
    Index(
        JOB_RESULTS,
        [("job_id", ASCENDING), ("chunk", ASCENDING)],
        {"unique": True, "name": "job_chunk"},
    ),
    # Every job document (the job, its chunks, results and user claims) is deleted by the
    # TTL monitor at its `expires_at` (the job's creation + JOB_RETENTION_DAYS, the same
    # for all of a job's documents), as the Idempotency-Key records are. Documents stored
    # before retention existed have no `expires_at` and stay until
    # `manage.py backfill_job_expiry` gives them one.
    *(
        Index(
            collection,
            [("expires_at", ASCENDING)],
            {"expireAfterSeconds": 0, "name": "expires_at_ttl"},
        )
        for collection in (ASSIGNMENT_JOBS, JOB_CHUNKS, JOB_RESULTS, JOB_USERS)
    ),
]


@dataclass(frozen=True)
class UniqueConflict:
    """Documents that keep a unique index from being created."""

    index: str
    collection: str
    keys: int  # distinct key values held by more than one document
    surplus: int  # documents beyond the first of each such key value
    example: dict[str, Any]  # one such key value
    example_count: int

    def explain(self) -> str:
        fields = ", ".join(self.example)
        return (
            f"{self.collection} holds {self.keys} duplicated ({fields}) value(s) that the "
            f"unique index {self.index} forbids ({self.surplus} surplus document(s)); for "
            f"example {self.example} appears {self.example_count} times"
        )


# Database name -> monotonic time its indexes were last ensured.
_ensured: dict[str, float] = {}
# Database name -> monotonic time before which a failed creation is not retried.
_failed_until: dict[str, float] = {}
# Bumped by every server change: an ensure that started before one must not record success.
_generation = 0


def forget_ensured() -> None:
    """The server may have changed: verify the indexes again before the next guarded write."""
    global _generation
    _generation += 1
    _ensured.clear()
    _failed_until.clear()


on_server_change(forget_ensured)


async def ensure_indexes(db: Any) -> list[str]:
    """Create the declared indexes; idempotent (createIndexes on an existing index is a no-op).

    Raises DuplicateKeyError when existing documents violate a unique index
    (`unique_conflicts` says which).
    """
    generation = _generation
    created: list[str] = []
    for collection in sorted({index.collection for index in INDEXES}):
        models = [IndexModel(i.keys, **i.options) for i in INDEXES if i.collection == collection]
        created += await db[collection].create_indexes(models)
    if generation == _generation:
        _ensured[db.name] = time.monotonic()
    return created


async def ensure_indexes_once(db: Any) -> None:
    """Writes that rely on the unique enrollment index call this first.

    A dictionary lookup while the indexes are known to exist on this server. Otherwise
    (the process started while MongoDB was down, the server changed since, or the memory
    is older than INDEXES_RECHECK_SECONDS) it creates them before the write goes out, so
    nothing is ever inserted unguarded. If they cannot be created the write is refused
    with a 503: the database is unreachable, or duplicates already there keep the unique
    index from being built, which needs an operator (logged with what to run).
    """
    now = time.monotonic()
    ensured = _ensured.get(db.name)
    if ensured is not None and now - ensured < INDEXES_RECHECK_SECONDS:
        return
    if _failed_until.get(db.name, 0.0) > now:
        raise ServiceUnavailable(_refusal())
    try:
        with unavailable_on_driver_error():
            await ensure_indexes(db)
    except DuplicateKeyError as exc:
        _failed_until[db.name] = time.monotonic() + INDEXES_RETRY_SECONDS
        logger.error(
            "the unique enrollment index is missing and cannot be created because "
            "enrollments hold duplicates (%s); enrollment writes are refused until it "
            "exists: %s",
            exc,
            DEDUPE_HINT,
        )
        raise ServiceUnavailable(_refusal()) from exc


def _refusal() -> str:
    return "Enrollments are paused while the database is being repaired; try again later."


async def enrollment_index_present() -> bool:
    """Whether the unique (course_id, user_id) enrollment index exists on the server now;
    False also when MongoDB cannot be asked (the caller is not ready either way)."""
    try:
        return await unique_enrollment_index_exists(get_db())
    except ServiceUnavailable as exc:
        logger.warning("cannot list the enrollment indexes: %s", exc)
        return False


async def duplicate_keys(db: Any, index: Index) -> list[dict[str, Any]]:
    """The key values of `index` held by more than one document, most repeated first:
    `{"_id": {field: value, ...}, "n": count}` each. A full scan, for repair tools only."""
    names = [name for name, _ in index.keys]
    pipeline = [
        {"$group": {"_id": {name: f"${name}" for name in names}, "n": {"$sum": 1}}},
        {"$match": {"n": {"$gt": 1}}},
        {"$sort": {"n": -1}},
    ]
    with unavailable_on_driver_error():
        return [g async for g in await cursor(db[index.collection].aggregate(pipeline))]


async def unique_conflicts(db: Any) -> list[UniqueConflict]:
    """For each declared unique index, the documents that keep it from being created."""
    conflicts = []
    for index in INDEXES:
        if not index.options.get("unique"):
            continue
        groups = await duplicate_keys(db, index)
        if groups:
            conflicts.append(
                UniqueConflict(
                    index=index.options["name"],
                    collection=index.collection,
                    keys=len(groups),
                    surplus=sum(group["n"] - 1 for group in groups),
                    example=groups[0]["_id"],
                    example_count=groups[0]["n"],
                )
            )
    return conflicts


async def unique_enrollment_index_exists(db: Any) -> bool:
    """Whether the index that guards exactly-once enrollment exists, as declared. Raises
    ServiceUnavailable when MongoDB cannot be asked."""
    with unavailable_on_driver_error():
        indexes = await db[ENROLLMENT_UNIQUE.collection].index_information()
    return any(
        info.get("unique") and [tuple(key) for key in info["key"]] == ENROLLMENT_UNIQUE.keys
        for info in indexes.values()
    )


async def enrollment_index_ready(db: Any) -> bool:
    """Readiness: the unique enrollment index exists, created here if it is missing (MongoDB
    was down when the process started, or came back empty); False if it cannot be created
    (duplicate pairs: see `reconcile_enrollments --dedupe`). Raises ServiceUnavailable when
    MongoDB cannot be reached."""
    if await unique_enrollment_index_exists(db):
        return True
    try:
        with unavailable_on_driver_error():
            await ensure_indexes(db)
    except DuplicateKeyError:
        logger.warning("the unique enrollment index is missing: %s", DEDUPE_HINT)
        return False
    return await unique_enrollment_index_exists(db)
