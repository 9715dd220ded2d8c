"""Every MongoDB query for stored assignment reports (`courses.assignment` writes them).

A report is a head document in `assignments` (who, which course, when, the summary) and
its per-user results in `assignment_results`, ASSIGNMENT_RESULTS_CHUNK results per
document. The head stays a few hundred bytes whatever the cohort, so the list endpoint
reads small documents, and no document comes near MongoDB's 16 MiB limit: a chunk of
1,000 results with 254-character email identifiers is about 0.3 MB.

The results are written first and the head last: a report is visible once its head is,
and a report whose head is there is complete. Results are upserted by (assignment, seq),
so a retry of a crashed attempt under the same id (an Idempotency-Key whose lease ran
out) rewrites them instead of failing.

Kept apart from `courses/repository.py` (courses and enrollments): a separate pair of
collections with their own lifecycle.
"""

import asyncio
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReplaceOne
from pymongo.errors import DuplicateKeyError

from courses.documents import StoredAssignment
from mongo.client import get_collection, unavailable_on_driver_error
from mongo.indexes import ASSIGNMENT_RESULTS, ASSIGNMENTS

ASSIGNMENT_RESULTS_CHUNK = 1000
_HEAD_PROJECTION = {"chunks": 0}


def _filter(course_id: str | None) -> dict[str, Any]:
    return {} if course_id is None else {"course_id": ObjectId(course_id)}


def _assignment(doc: dict[str, Any], results: list[dict] | None = None) -> StoredAssignment:
    return StoredAssignment(
        id=str(doc["_id"]),
        course_id=str(doc["course_id"]),
        assigned_by=doc["assigned_by"],
        created_at=doc["created_at"],
        due_at=doc.get("due_at"),
        override_capacity=doc.get("override_capacity", False),
        summary=doc["summary"],
        enrollers=doc["enrollers"],
        results=results,
    )


async def assignment_store(assignment: StoredAssignment) -> bool:
    """Store the report (two writes whatever its size); False when a report with its id
    is already stored (then that one stands)."""
    results = assignment.results or []
    chunks = [
        results[start : start + ASSIGNMENT_RESULTS_CHUNK]
        for start in range(0, len(results), ASSIGNMENT_RESULTS_CHUNK)
    ]
    oid = ObjectId(assignment.id)
    with unavailable_on_driver_error():
        if chunks:
            await get_collection(ASSIGNMENT_RESULTS).bulk_write(
                [
                    ReplaceOne(
                        {"assignment_id": oid, "seq": seq},
                        {"assignment_id": oid, "seq": seq, "results": chunk},
                        upsert=True,
                    )
                    for seq, chunk in enumerate(chunks)
                ],
                ordered=False,
            )
        try:
            await get_collection(ASSIGNMENTS).insert_one(
                {
                    "_id": oid,
                    "course_id": ObjectId(assignment.course_id),
                    "assigned_by": assignment.assigned_by,
                    "created_at": assignment.created_at,
                    "due_at": assignment.due_at,
                    "override_capacity": assignment.override_capacity,
                    "summary": assignment.summary,
                    "enrollers": assignment.enrollers,
                    "chunks": len(chunks),
                }
            )
        except DuplicateKeyError:
            return False
    return True


async def assignment_get(assignment_id: str) -> StoredAssignment | None:
    """The stored report with its results (the head and its chunks, read concurrently)."""
    oid = ObjectId(assignment_id)
    chunks = (
        get_collection(ASSIGNMENT_RESULTS)
        .find({"assignment_id": oid}, {"results": 1, "_id": 0})
        .sort("seq", ASCENDING)
    )
    with unavailable_on_driver_error():
        head, results = await asyncio.gather(
            get_collection(ASSIGNMENTS).find_one({"_id": oid}, _HEAD_PROJECTION),
            chunks.to_list(None),
        )
    if head is None:
        return None
    return _assignment(head, [result for chunk in results for result in chunk["results"]])


async def assignment_count(*, course_id: str | None) -> int:
    with unavailable_on_driver_error():
        return await get_collection(ASSIGNMENTS).count_documents(_filter(course_id))


async def assignment_page(
    *, course_id: str | None, limit: int, offset: int
) -> list[StoredAssignment]:
    """One page of reports (without results), newest first."""
    cursor = (
        get_collection(ASSIGNMENTS)
        .find(_filter(course_id), _HEAD_PROJECTION)
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .skip(offset)
        .limit(limit)
    )
    with unavailable_on_driver_error():
        return [_assignment(doc) async for doc in cursor]
