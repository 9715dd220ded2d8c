"""Every MongoDB index the service relies on, declared in one place."""

import logging
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from mongo.client import unavailable_on_driver_error

logger = logging.getLogger(__name__)

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


async def unique_enrollment_index_exists(db: Any) -> bool:
    """Whether the index that guards exactly-once enrollment exists, as declared."""
    guard = INDEXES[0]
    with unavailable_on_driver_error():
        indexes = await db[guard.collection].index_information()
    return any(
        info.get("unique") and [tuple(key) for key in info["key"]] == guard.keys
        for info in indexes.values()
    )


async def enrollment_index_ready(db: Any) -> bool:
    """Readiness: the unique enrollment index exists, created here if it is missing (MongoDB
    was down when the process started, or came back empty); False if it cannot be created
    (duplicate pairs: see `reconcile_enrollments`). Raises ServiceUnavailable when MongoDB
    cannot be reached."""
    if await unique_enrollment_index_exists(db):
        return True
    try:
        with unavailable_on_driver_error():
            await ensure_indexes(db)
    except DuplicateKeyError:
        logger.warning("the unique enrollment index is missing: duplicate (course, user) pairs")
        return False
    return await unique_enrollment_index_exists(db)
