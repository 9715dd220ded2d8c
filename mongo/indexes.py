"""Every MongoDB index the service relies on, declared in one place."""

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from mongo.client import unavailable_on_driver_error

COURSES = "courses"
ENROLLMENTS = "enrollments"
IDEMPOTENCY_KEYS = "idempotency_keys"


@dataclass(frozen=True)
class Index:
    collection: str
    keys: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)


INDEXES = [
    # The guard of "exactly once": a second enrollment of a user in a course cannot exist.
    Index(
        ENROLLMENTS,
        [("course_id", ASCENDING), ("user_id", ASCENDING)],
        {"unique": True, "name": "course_user_unique"},
    ),
    # A user's own enrollments, newest first.
    Index(
        ENROLLMENTS,
        [("user_id", ASCENDING), ("enrolled_at", DESCENDING)],
        {"name": "user_enrolled_at"},
    ),
    # The catalogue, newest first.
    Index(COURSES, [("created_at", DESCENDING)], {"name": "created_at"}),
    # Idempotency-Key answers are forgotten at `expires_at` (24 h after the first request).
    # The TTL monitor deletes them lazily (about once a minute), so readers also treat a
    # record past `expires_at` as absent; the claim itself relies only on the unique `_id`.
    Index(
        IDEMPOTENCY_KEYS,
        [("expires_at", ASCENDING)],
        {"expireAfterSeconds": 0, "name": "expires_at_ttl"},
    ),
]


# Databases (by name) whose indexes this process has ensured.
_ensured: set[str] = set()


async def ensure_indexes(db: Any) -> list[str]:
    """Create the declared indexes; idempotent (createIndexes on an existing index is a no-op)."""
    created: list[str] = []
    for collection in sorted({index.collection for index in INDEXES}):
        models = [IndexModel(i.keys, **i.options) for i in INDEXES if i.collection == collection]
        created += await db[collection].create_indexes(models)
    _ensured.add(db.name)
    return created


async def ensure_indexes_once(db: Any) -> None:
    """Writes that rely on the unique enrollment index call this first: a set lookup once
    the indexes exist; if MongoDB was down when the process started, the first write after
    it returns creates them instead of inserting unguarded (a duplicate)."""
    if db.name in _ensured:
        return
    with unavailable_on_driver_error():
        await ensure_indexes(db)
