"""Every MongoDB index the service relies on, declared in one place."""

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from mongo.client import unavailable_on_driver_error

COURSES = "courses"
ENROLLMENTS = "enrollments"


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
    # A course's members by the operation that counted them in: adopting a retired bulk
    # operation's enrollments and reconciling the most recent members (courses.membership).
    Index(
        ENROLLMENTS,
        [("course_id", ASCENDING), ("op", ASCENDING), ("_id", ASCENDING)],
        {"name": "course_op"},
    ),
    # A user's own enrollments, newest first.
    Index(
        ENROLLMENTS,
        [("user_id", ASCENDING), ("enrolled_at", DESCENDING)],
        {"name": "user_enrolled_at"},
    ),
    # The catalogue, newest first.
    Index(COURSES, [("created_at", DESCENDING)], {"name": "created_at"}),
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
