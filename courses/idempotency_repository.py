"""Every MongoDB query for Idempotency-Key records (`courses.idempotency` holds the rules).

A record is one document per (caller, key), `_id: {"user_id": ..., "key": ...}`, so the
always-unique `_id` index is the lock: of two requests claiming the same key at once,
exactly one inserts the record. Every later write is conditioned on the claim's random
`token`, so an attempt whose lease was taken over can no longer store or release anything.

Kept apart from `courses/repository.py` (courses and enrollments) because the records are
a separate collection with their own lifecycle, used by any POST operation.
"""

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from mongo.client import get_collection, unavailable_on_driver_error
from mongo.indexes import IDEMPOTENCY_KEYS

IN_PROGRESS = "in_progress"
DONE = "done"


@dataclass(frozen=True)
class IdempotencyRecord:
    state: str
    token: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    lease_expires_at: datetime | None = None
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class NewClaim:
    """What a request writes when it claims a key (inserted, or over a stale record)."""

    token: str
    fingerprint: str
    created_at: datetime
    lease_expires_at: datetime
    expires_at: datetime


def _id(user_id: int, key: str) -> dict[str, Any]:
    # One place builds the compound _id, so its field order (part of its identity) is fixed.
    return {"user_id": user_id, "key": key}


def _record(doc: dict[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        state=doc["state"],
        token=doc["token"],
        fingerprint=doc["fingerprint"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        lease_expires_at=doc.get("lease_expires_at"),
        status=doc.get("status"),
        body=doc.get("body"),
        content_type=doc.get("content_type"),
    )


def _claim(claim: NewClaim) -> dict[str, Any]:
    return {"state": IN_PROGRESS, **asdict(claim)}


async def _update_held(user_id: int, key: str, token: str, update: dict[str, Any]) -> bool:
    """Apply `update` only while the record carries `token`; whether it did."""
    with unavailable_on_driver_error():
        result = await get_collection(IDEMPOTENCY_KEYS).update_one(
            {"_id": _id(user_id, key), "token": token}, update
        )
    return result.matched_count == 1


async def idempotency_record_claim(
    *, user_id: int, key: str, claim: NewClaim
) -> IdempotencyRecord | None:
    """Insert an in-progress claim unless the key has a record; return that record.

    None means this call claimed the key. One upsert answers both questions, so a replay
    costs one command, like `repository.enrollment_insert_or_get`.
    """
    for _ in range(2):
        try:
            with unavailable_on_driver_error():
                existing = await get_collection(IDEMPOTENCY_KEYS).find_one_and_update(
                    {"_id": _id(user_id, key)},
                    {"$setOnInsert": _claim(claim)},
                    upsert=True,
                    return_document=ReturnDocument.BEFORE,
                )
            return None if existing is None else _record(existing)
        except DuplicateKeyError:
            # Two upserts of one new key raced and the unique _id let one in; the retry
            # returns that one's record.
            continue
    raise DuplicateKeyError("idempotency claim kept colliding")


async def idempotency_record_take_over(
    *, user_id: int, key: str, expected_token: str, claim: NewClaim
) -> bool:
    """Claim a key whose record is stale (lease or TTL expired), only if nobody else did
    since it was read (the record still carries `expected_token`)."""
    return await _update_held(
        user_id,
        key,
        expected_token,
        {"$set": _claim(claim), "$unset": {"status": "", "body": "", "content_type": ""}},
    )


async def idempotency_record_complete(
    *, user_id: int, key: str, token: str, status: int, body: bytes, content_type: str
) -> bool:
    """Store the answer of the claim holding `token`; False if its claim was taken over."""
    answer = {"state": DONE, "status": status, "body": body, "content_type": content_type}
    return await _update_held(
        user_id, key, token, {"$set": answer, "$unset": {"lease_expires_at": ""}}
    )


async def idempotency_record_release(*, user_id: int, key: str, token: str) -> None:
    """Forget the claim holding `token`, so a retry runs the request for real."""
    with unavailable_on_driver_error():
        await get_collection(IDEMPOTENCY_KEYS).delete_one(
            {"_id": _id(user_id, key), "token": token}
        )
