"""Every MongoDB query for assignment jobs (`courses.jobs` holds the rules).

Three collections (mongo/indexes.py):

- `assignment_jobs`: one small document per job (status, counts, summary, timestamps, and
  `counted`, the chunk numbers already added to the counts: at most JOB_MAX_USERS /
  JOB_CHUNK_SIZE small integers).
- `assignment_job_chunks`: the job's input, one document per chunk of JOB_CHUNK_SIZE
  identifiers, which is also the chunk's claim (`lease_until`) and the record of the
  membership operations its attempts used (`ops`).
- `assignment_job_results`: the per-user results, one document per chunk, written whole
  (a re-run replaces it).
- `assignment_job_users`: one small document per distinct user (or unresolved identifier)
  a job names, `_id` `<job>:<identity>`, holding the chunk that named it first to run:
  how a user named again in another chunk is reported as a duplicate.

Kept apart from `courses/repository.py` (courses and enrollments) like the Idempotency-Key
records: jobs are their own collections with their own lifecycle. Every document of a job
carries the job's `expires_at` (its creation + JOB_RETENTION_DAYS), on which a TTL index
deletes it (mongo/indexes.py): one time for all of them, so a job's user claims never
outlive or predate the chunks they guard.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import Int64
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from mongo.client import get_collection, unavailable_on_driver_error
from mongo.indexes import ASSIGNMENT_JOBS, JOB_CHUNKS, JOB_RESULTS, JOB_USERS

DUPLICATE_KEY = 11000
READ_CHUNK = 1000  # ids per `$in` read (courses.assignment.READ_CHUNK)

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
ACTIVE = (QUEUED, RUNNING)
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)


@dataclass(frozen=True)
class AssignmentJob:
    id: str
    course_id: str
    admin_id: int
    identifier: str  # how the input names users: user_id, username, email or "mixed" (CSV)
    status: str
    total: int
    chunks: int
    processed: int
    summary: dict[str, int]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    # The request's options (API.md: the same bodies as assign-multiple). `due_at` is the
    # JSON body's, for every user; a CSV's per-row deadlines are stored with its chunks.
    due_at: datetime | None = None
    override_capacity: bool = False
    dry_run: bool = False
    with_identifiers: bool = False  # results carry "user" (all but JSON user_ids)
    # A dry run confirmed (courses.jobs.job_confirm): the real job made from its input.
    confirmed_job_id: str | None = None
    # A real job made from a dry run: that dry run's id.
    preview_job_id: str | None = None
    # When the TTL monitor deletes the job's documents; None for jobs stored before
    # retention existed (see courses.jobs.job_expires_at).
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ChunkInput:
    """One chunk of a job's input: the identifiers as sent, their kind (one for all, or
    one each when a CSV has several identifier columns) and per-row deadlines (a CSV's
    `due_at` column; None: the job's `due_at` for every row)."""

    identifiers: list[Any]
    kinds: str | list[str]
    due_ats: list[datetime | None] | None = None


@dataclass(frozen=True)
class ChunkClaim:
    """A chunk this worker now holds until `lease_until`."""

    input: ChunkInput
    op: int
    earlier_ops: list[int] = field(default_factory=list)

    @property
    def identifiers(self) -> list[Any]:
        return self.input.identifiers


def _job(doc: dict[str, Any]) -> AssignmentJob:
    return AssignmentJob(
        id=doc["_id"],
        course_id=doc["course_id"],
        admin_id=doc["admin_id"],
        identifier=doc["identifier"],
        status=doc["status"],
        total=doc["total"],
        chunks=doc["chunks"],
        processed=doc["processed"],
        summary=dict(doc["summary"]),
        created_at=doc["created_at"],
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        error=doc.get("error"),
        # Jobs stored before these options existed have none of them.
        due_at=doc.get("due_at"),
        override_capacity=doc.get("override_capacity", False),
        dry_run=doc.get("dry_run", False),
        with_identifiers=doc.get("with_identifiers", False),
        confirmed_job_id=doc.get("confirmed_job_id"),
        preview_job_id=doc.get("preview_job_id"),
        expires_at=doc.get("expires_at"),
    )


def _chunk_id(job_id: str, chunk: int) -> str:
    return f"{job_id}:{chunk}"


async def job_insert(job: AssignmentJob) -> bool:
    """Insert the job document; False if a job with its id exists (an idempotent retry)."""
    doc = {
        "_id": job.id,
        "course_id": job.course_id,
        "admin_id": job.admin_id,
        "identifier": job.identifier,
        "status": job.status,
        "total": job.total,
        "chunks": job.chunks,
        "processed": 0,
        "summary": job.summary,
        "counted": [],
        "created_at": job.created_at,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "due_at": job.due_at,
        "override_capacity": job.override_capacity,
        "dry_run": job.dry_run,
        "with_identifiers": job.with_identifiers,
        "confirmed_job_id": None,
        "preview_job_id": job.preview_job_id,
        "expires_at": job.expires_at,
    }
    try:
        with unavailable_on_driver_error():
            await get_collection(ASSIGNMENT_JOBS).insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def job_get(job_id: str) -> AssignmentJob | None:
    with unavailable_on_driver_error():
        doc = await get_collection(ASSIGNMENT_JOBS).find_one({"_id": job_id}, {"counted": 0})
    return None if doc is None else _job(doc)


async def job_count(course_id: str) -> int:
    with unavailable_on_driver_error():
        return await get_collection(ASSIGNMENT_JOBS).count_documents({"course_id": course_id})


async def job_page(course_id: str, *, limit: int, offset: int) -> list[AssignmentJob]:
    """One page of a course's jobs, newest first."""
    cursor = (
        get_collection(ASSIGNMENT_JOBS)
        .find({"course_id": course_id}, {"counted": 0})
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .skip(offset)
        .limit(limit)
    )
    with unavailable_on_driver_error():
        return [_job(doc) async for doc in cursor]


async def _job_update(query: dict[str, Any], update: dict[str, Any]) -> AssignmentJob | None:
    with unavailable_on_driver_error():
        doc = await get_collection(ASSIGNMENT_JOBS).find_one_and_update(
            query, update, projection={"counted": 0}, return_document=ReturnDocument.AFTER
        )
    return None if doc is None else _job(doc)


async def job_start(job_id: str, moment: datetime) -> None:
    """queued → running (a no-op once it runs or ended)."""
    await _job_update(
        {"_id": job_id, "status": QUEUED}, {"$set": {"status": RUNNING, "started_at": moment}}
    )


async def job_end(
    job_id: str, *, status: str, moment: datetime, error: str | None = None
) -> AssignmentJob | None:
    """Move a queued or running job to a final status; None if it had ended already."""
    return await _job_update(
        {"_id": job_id, "status": {"$in": list(ACTIVE)}},
        {"$set": {"status": status, "finished_at": moment, "error": error}},
    )


async def job_confirm_claim(job_id: str, confirmed_job_id: str) -> AssignmentJob | None:
    """Mark a finished dry run as confirmed by `confirmed_job_id`, once: None if it is not
    a succeeded dry run or another confirmation got there first (the same atomic update)."""
    return await _job_update(
        {"_id": job_id, "dry_run": True, "status": SUCCEEDED, "confirmed_job_id": None},
        {"$set": {"confirmed_job_id": confirmed_job_id}},
    )


async def job_confirm_release(job_id: str, confirmed_job_id: str) -> None:
    """Undo job_confirm_claim when the real job could not be created (so it can be retried)."""
    await _job_update(
        {"_id": job_id, "confirmed_job_id": confirmed_job_id},
        {"$set": {"confirmed_job_id": None}},
    )


async def job_count_chunk(job_id: str, chunk: int, counts: dict[str, int]) -> AssignmentJob | None:
    """Add one chunk's counts to the job, once: filtered on the chunk not being in
    `counted`, pushed there by the same atomic update. None if it was counted already."""
    inc = {"processed": counts["requested"]}
    inc.update({f"summary.{key}": value for key, value in counts.items()})
    return await _job_update(
        {"_id": job_id, "counted": {"$ne": chunk}},
        {"$inc": inc, "$push": {"counted": chunk}},
    )


async def job_counted(job_id: str, chunk: int) -> bool:
    """Whether the chunk's counts are in the job already."""
    with unavailable_on_driver_error():
        found = await get_collection(ASSIGNMENT_JOBS).count_documents(
            {"_id": job_id, "counted": chunk}, limit=1
        )
    return bool(found)


async def job_complete_if_counted(job_id: str, chunks: int, moment: datetime) -> bool:
    """running → succeeded once every chunk is counted; whether this call did it."""
    done = await _job_update(
        {
            "_id": job_id,
            "status": {"$in": list(ACTIVE)},
            f"counted.{chunks - 1}": {"$exists": True},
        },
        {"$set": {"status": SUCCEEDED, "finished_at": moment}},
    )
    return done is not None


async def chunks_insert(
    job_id: str, first: int, chunks: Sequence[ChunkInput], *, expires_at: datetime
) -> None:
    """Store input chunks `first`, `first + 1`, ... (replacing any a crashed attempt left)."""
    docs = [
        {
            "_id": _chunk_id(job_id, first + i),
            "job_id": job_id,
            "chunk": first + i,
            "identifiers": chunk.identifiers,
            "kinds": chunk.kinds,
            "due_ats": chunk.due_ats,
            "done": False,
            "lease_until": None,
            "ops": [],
            "expires_at": expires_at,
        }
        for i, chunk in enumerate(chunks)
    ]
    with unavailable_on_driver_error():
        collection = get_collection(JOB_CHUNKS)
        await collection.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        await collection.insert_many(docs, ordered=False)


def _chunk_input(doc: dict[str, Any]) -> ChunkInput:
    return ChunkInput(
        identifiers=doc["identifiers"],
        kinds=doc.get("kinds", "user_id"),  # chunks stored before kinds existed: ids
        due_ats=doc.get("due_ats"),
    )


async def chunks_read(job_id: str) -> AsyncIterator[ChunkInput]:
    """A job's stored input, chunk by chunk in order (one chunk's document in memory at a
    time, the cursor's batch aside)."""
    cursor = (
        get_collection(JOB_CHUNKS)
        .find({"job_id": job_id}, {"identifiers": 1, "kinds": 1, "due_ats": 1})
        .sort([("chunk", ASCENDING)])
        .batch_size(2)
    )
    with unavailable_on_driver_error():
        async for doc in cursor:
            yield _chunk_input(doc)


async def chunks_delete(job_id: str) -> None:
    with unavailable_on_driver_error():
        await get_collection(JOB_CHUNKS).delete_many({"job_id": job_id})


async def chunk_claim(
    job_id: str, chunk: int, *, op: int, moment: datetime, lease_until: datetime
) -> ChunkClaim | None:
    """Take the chunk until `lease_until` unless it is done or another worker's lease on
    it still runs; record `op` as this attempt's operation. None if not taken."""
    with unavailable_on_driver_error():
        doc = await get_collection(JOB_CHUNKS).find_one_and_update(
            {
                "_id": _chunk_id(job_id, chunk),
                "done": False,
                "$or": [{"lease_until": None}, {"lease_until": {"$lt": moment}}],
            },
            {"$set": {"lease_until": lease_until}, "$push": {"ops": Int64(op)}},
            return_document=ReturnDocument.AFTER,
        )
    if doc is None:
        return None
    return ChunkClaim(input=_chunk_input(doc), op=op, earlier_ops=doc["ops"][:-1])


async def chunk_state(job_id: str, chunk: int) -> tuple[bool, datetime | None] | None:
    """(done, lease_until) of a chunk, None if it does not exist."""
    with unavailable_on_driver_error():
        doc = await get_collection(JOB_CHUNKS).find_one(
            {"_id": _chunk_id(job_id, chunk)}, {"done": 1, "lease_until": 1}
        )
    return None if doc is None else (doc["done"], doc["lease_until"])


async def chunk_done(job_id: str, chunk: int) -> None:
    with unavailable_on_driver_error():
        await get_collection(JOB_CHUNKS).update_one(
            {"_id": _chunk_id(job_id, chunk)}, {"$set": {"done": True, "lease_until": None}}
        )


async def chunk_release(job_id: str, chunk: int) -> None:
    """Give a claimed chunk back (its attempt failed and will be retried)."""
    with unavailable_on_driver_error():
        await get_collection(JOB_CHUNKS).update_one(
            {"_id": _chunk_id(job_id, chunk), "done": False}, {"$set": {"lease_until": None}}
        )


async def results_put(
    job_id: str, chunk: int, results: Sequence[dict[str, Any]], *, expires_at: datetime
) -> None:
    """Store one chunk's results, as rendered (replacing those of an earlier attempt)."""
    with unavailable_on_driver_error():
        await get_collection(JOB_RESULTS).replace_one(
            {"_id": _chunk_id(job_id, chunk)},
            {"job_id": job_id, "chunk": chunk, "results": list(results), "expires_at": expires_at},
            upsert=True,
        )


def _result(stored: Any) -> dict[str, Any]:
    # Results stored before they were rendered dicts: [user_id, status].
    if isinstance(stored, list):
        return {"user_id": stored[0], "status": stored[1]}
    return stored


async def results_from(
    job_id: str, chunk: int, *, chunks: int
) -> list[tuple[int, list[dict[str, Any]]]]:
    """Up to `chunks` result documents from chunk number `chunk` on, in chunk order:
    (chunk number, its results)."""
    cursor = (
        get_collection(JOB_RESULTS)
        .find({"job_id": job_id, "chunk": {"$gte": chunk}}, {"chunk": 1, "results": 1})
        .sort([("chunk", ASCENDING)])
        .limit(chunks)
    )
    with unavailable_on_driver_error():
        return [(doc["chunk"], [_result(r) for r in doc["results"]]) async for doc in cursor]


async def users_claim(
    job_id: str, chunk: int, identities: Sequence[str], *, rerun: bool, expires_at: datetime
) -> set[str]:
    """Record that `chunk` names these users (distinct identities); returns those that
    another chunk of the job named first. One unordered insert: an identity already there
    is a duplicate-key error. On a chunk's first attempt every such error is another
    chunk's; on a `rerun` the holders are read back (the chunk's own, from an attempt that
    crashed, are not duplicates)."""
    if not identities:
        return set()
    docs = [
        {"_id": f"{job_id}:{i}", "job_id": job_id, "chunk": chunk, "expires_at": expires_at}
        for i in identities
    ]
    collection = get_collection(JOB_USERS)
    try:
        with unavailable_on_driver_error():
            await collection.insert_many(docs, ordered=False)
        return set()
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error["code"] != DUPLICATE_KEY for error in errors):
            raise
        clashing = [docs[error["index"]]["_id"] for error in errors]
    if rerun:
        # `$in` reads of at most READ_CHUNK ids, as the bulk path's: the stand-in checks
        # each found document against the whole list.
        others = []
        for start in range(0, len(clashing), READ_CHUNK):
            with unavailable_on_driver_error():
                holders = collection.find(
                    {"_id": {"$in": clashing[start : start + READ_CHUNK]}}, {"chunk": 1}
                )
                others += [doc["_id"] async for doc in holders if doc["chunk"] != chunk]
        clashing = others
    prefix = len(job_id) + 1
    return {key[prefix:] for key in clashing}


async def jobs_without_expiry() -> AsyncIterator[tuple[str, datetime]]:
    """(id, created_at) of the jobs stored before retention existed (no `expires_at`)."""
    cursor = get_collection(ASSIGNMENT_JOBS).find(
        {"expires_at": {"$exists": False}}, {"created_at": 1}
    )
    with unavailable_on_driver_error():
        async for doc in cursor:
            yield doc["_id"], doc["created_at"]


async def job_set_expiry(job_id: str, expires_at: datetime) -> None:
    """Give a job's documents that have none an `expires_at`: its input chunks, results and
    user claims first, the job last, so an interrupted run finds the job again."""
    missing = {"job_id": job_id, "expires_at": {"$exists": False}}
    with unavailable_on_driver_error():
        for name in (JOB_CHUNKS, JOB_RESULTS, JOB_USERS):
            await get_collection(name).update_many(missing, {"$set": {"expires_at": expires_at}})
        await get_collection(ASSIGNMENT_JOBS).update_one(
            {"_id": job_id, "expires_at": {"$exists": False}},
            {"$set": {"expires_at": expires_at}},
        )


async def orphans_set_expiry(expires_at: datetime) -> int:
    """Chunks, results and claims still without `expires_at` once every job has one: those
    of a job whose creation crashed before the job document was stored. How many."""
    changed = 0
    with unavailable_on_driver_error():
        for name in (JOB_CHUNKS, JOB_RESULTS, JOB_USERS):
            result = await get_collection(name).update_many(
                {"expires_at": {"$exists": False}}, {"$set": {"expires_at": expires_at}}
            )
            changed += result.modified_count
    return changed
