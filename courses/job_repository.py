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

Kept apart from `courses/repository.py` (courses and enrollments) like the Idempotency-Key
records: jobs are their own collections with their own lifecycle.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import Int64
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from mongo.client import get_collection, unavailable_on_driver_error
from mongo.indexes import ASSIGNMENT_JOBS, JOB_CHUNKS, JOB_RESULTS

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
    identifier: str  # the input column: "user_id" (usernames and emails plug in here)
    status: str
    total: int
    chunks: int
    processed: int
    summary: dict[str, int]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChunkClaim:
    """A chunk this worker now holds until `lease_until`."""

    identifiers: list[Any]
    op: int
    earlier_ops: list[int] = field(default_factory=list)


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


async def job_count_chunk(job_id: str, chunk: int, counts: dict[str, int]) -> AssignmentJob | None:
    """Add one chunk's counts to the job, once: filtered on the chunk not being in
    `counted`, pushed there by the same atomic update. None if it was counted already."""
    inc = {"processed": counts["requested"]}
    inc.update({f"summary.{key}": value for key, value in counts.items()})
    return await _job_update(
        {"_id": job_id, "counted": {"$ne": chunk}},
        {"$inc": inc, "$push": {"counted": chunk}},
    )


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


async def chunks_insert(job_id: str, first: int, chunks: Sequence[list[Any]]) -> None:
    """Store input chunks `first`, `first + 1`, ... (replacing any a crashed attempt left)."""
    docs = [
        {
            "_id": _chunk_id(job_id, first + i),
            "job_id": job_id,
            "chunk": first + i,
            "identifiers": identifiers,
            "done": False,
            "lease_until": None,
            "ops": [],
        }
        for i, identifiers in enumerate(chunks)
    ]
    with unavailable_on_driver_error():
        collection = get_collection(JOB_CHUNKS)
        await collection.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        await collection.insert_many(docs, ordered=False)


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
    return ChunkClaim(identifiers=doc["identifiers"], op=op, earlier_ops=doc["ops"][:-1])


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


async def results_put(job_id: str, chunk: int, results: Sequence[tuple[Any, str]]) -> None:
    """Store one chunk's results (replacing those of an earlier attempt of the chunk)."""
    with unavailable_on_driver_error():
        await get_collection(JOB_RESULTS).replace_one(
            {"_id": _chunk_id(job_id, chunk)},
            {"job_id": job_id, "chunk": chunk, "results": [list(r) for r in results]},
            upsert=True,
        )


async def results_from(job_id: str, chunk: int, *, chunks: int) -> list[tuple[int, list]]:
    """Up to `chunks` result documents from chunk number `chunk` on, in chunk order:
    (chunk number, its results)."""
    cursor = (
        get_collection(JOB_RESULTS)
        .find({"job_id": job_id, "chunk": {"$gte": chunk}}, {"chunk": 1, "results": 1})
        .sort([("chunk", ASCENDING)])
        .limit(chunks)
    )
    with unavailable_on_driver_error():
        return [(doc["chunk"], doc["results"]) async for doc in cursor]
