"""Value helpers shared by the index maps, the query planner and the update engine.

MongoDB compares values by BSON semantics, Python by its own: ``True == 1``, ``Decimal128`` is
unhashable, ``NaN != NaN`` and dicts/lists are unhashable.  ``hkey`` maps a BSON value to a
hashable key with MongoDB's equality (1 == 1.0 == Decimal128("1"), but true != 1), which is
what the hash indexes are keyed by.  ``sort_key`` maps a value to a natively comparable tuple in
BSON type order, so sorting runs at the speed of Python's own ``sorted``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
from collections.abc import Hashable, Iterator
from typing import Any

from bson import ObjectId, Regex
from bson.decimal128 import Decimal128
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.timestamp import Timestamp

# Key used for an empty array in an index (MongoDB indexes it as `undefined`, distinct from null).
EMPTY_ARRAY_KEY = ("<empty array>",)
_NAN_KEY = ("<nan>",)


def hkey(value: Any) -> Hashable:
    """Hashable key with MongoDB equality semantics for ``value``."""
    kind = type(value)
    # Fast path for the overwhelmingly common types (exact type: Int64/bool are subclasses).
    if kind is str or kind is ObjectId or kind is int:
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        return ("<bool>", value)
    if isinstance(value, float):
        return _NAN_KEY if value != value else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return _NAN_KEY if number.is_nan() else number
    if isinstance(value, dict):
        return ("<doc>", tuple((k, hkey(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("<arr>", tuple(hkey(v) for v in value))
    if isinstance(value, bytes):
        return ("<bin>", getattr(value, "subtype", 0), bytes(value))
    try:
        hash(value)
    except TypeError:
        return ("<repr>", kind.__name__, repr(value))
    return value


def is_plain_scalar(value: Any) -> bool:
    """True if an equality match on ``value`` means exactly "equal" (usable for index lookup).

    Excluded: None (also matches missing fields and arrays of subdocuments lacking the field),
    arrays (also match whole-array equality, while multikey entries hold elements), embedded
    documents (could be operator expressions) and regexes (pattern match, not equality).
    """
    return value is not None and not isinstance(
        value, dict | list | tuple | Regex | re.Pattern | MinKey | MaxKey
    )


def path_values(doc: Any, parts: tuple[str, ...]) -> list[Any]:
    """Values found at a dotted path, traversing arrays along the way as MongoDB does.

    An empty list means the path is missing.  A value that is itself an array is returned as
    the array (callers decide whether to expand its elements).
    """
    out: list[Any] = []
    _collect(doc, parts, 0, out)
    return out


def _collect(value: Any, parts: tuple[str, ...], i: int, out: list[Any]) -> None:
    if i == len(parts):
        out.append(value)
        return
    part = parts[i]
    if isinstance(value, dict):
        if part in value:
            _collect(value[part], parts, i + 1, out)
    elif isinstance(value, list):
        if part.isdigit() and int(part) < len(value):
            _collect(value[int(part)], parts, i + 1, out)
        for element in value:
            if isinstance(element, dict):
                _collect(element, parts, i, out)


def index_values(doc: Any, parts: tuple[str, ...]) -> tuple[list[Hashable], bool]:
    """Index keys of one field of ``doc`` (arrays expanded to elements) and whether it exists."""
    values = path_values(doc, parts)
    if not values:
        return [None], False
    keys: dict[Hashable, None] = {}
    for value in values:
        if isinstance(value, list):
            if not value:
                keys[EMPTY_ARRAY_KEY] = None
            for element in value:
                keys[hkey(element)] = None
        else:
            keys[hkey(value)] = None
    return list(keys), True


def first_value(doc: Any, path: str) -> Any:
    """The value at ``path`` (first one if an array is traversed) or None; for error messages."""
    values = path_values(doc, tuple(path.split(".")))
    return values[0] if values else None


# ---------------------------------------------------------------------------------- sorting


def sort_key(value: Any, descending: bool = False) -> tuple[Any, ...]:
    """A tuple ordering values like MongoDB's BSON comparison order.

    Arrays sort by their smallest element ascending and largest descending, as in MongoDB.
    """
    if isinstance(value, list):
        if not value:
            return (0,)
        keys = [sort_key(v, descending) for v in value]
        return max(keys) if descending else min(keys)
    return _scalar_key(value)


def _scalar_key(value: Any) -> tuple[Any, ...]:
    # Ranks follow https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/
    # Exact-type fast paths first: sorting calls this once per document and key.
    kind = type(value)
    if kind is str:
        return (3, value)
    if kind is dt.datetime and value.tzinfo is not None:
        return (9, value)
    if kind is ObjectId:
        return (7, value)
    if kind is int:
        return (2, value)
    if value is None:
        return (1,)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, int | float):
        return (2, value) if value == value else (2, float("-inf"), 0)
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return (2, float("-inf"), 0) if number.is_nan() else (2, number)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, dict):
        return (4, tuple((k, _scalar_key_or_array(v)) for k, v in value.items()))
    if isinstance(value, bytes):
        return (6, len(value), getattr(value, "subtype", 0), bytes(value))
    if isinstance(value, ObjectId):
        return (7, value)
    if isinstance(value, dt.datetime):
        # Stored datetimes are tz-aware (decoded with tz_aware=True); naive ones mean UTC.
        return (9, value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC))
    if isinstance(value, Timestamp):
        return (10, value.time, value.inc)
    if isinstance(value, Regex | re.Pattern):
        return (11, value.pattern)
    if isinstance(value, MinKey):
        return (-1,)
    if isinstance(value, MaxKey):
        return (99,)
    return (50, type(value).__name__, repr(value))


def _scalar_key_or_array(value: Any) -> tuple[Any, ...]:
    if isinstance(value, list):
        return (5, tuple(_scalar_key_or_array(v) for v in value))
    return _scalar_key(value)


def sort_documents(
    docs: list[dict[str, Any]], spec: dict[str, Any], limit: int = 0
) -> list[dict[str, Any]]:
    """Sort ``docs`` by a MongoDB sort spec ({field: 1 | -1, ...}), stable like MongoDB.

    With ``limit`` > 0 only the first ``limit`` documents are returned; when every key sorts
    the same direction that is a heap selection (O(n log limit)) instead of a full sort,
    which keeps paginated listings cheap.
    """
    fields: list[tuple[tuple[str, ...], bool]] = []
    for field, direction in spec.items():
        if isinstance(direction, dict):  # {$meta: "textScore"}: no text search, keep order
            continue
        if field == "$natural":
            docs = docs[::-1] if direction in (-1, -1.0) else list(docs)
            continue
        fields.append((tuple(field.split(".")), direction in (-1, -1.0)))
    if not fields:
        return docs[:limit] if limit > 0 else list(docs)
    if len({descending for _, descending in fields}) == 1:
        descending = fields[0][1]

        def composite(doc: dict[str, Any]) -> tuple:
            return tuple(_doc_sort_key(doc, parts, descending) for parts, _ in fields)

        if 0 < limit < len(docs):
            select = heapq.nlargest if descending else heapq.nsmallest
            return select(limit, docs, key=composite)
        return sorted(docs, key=composite, reverse=descending)
    result = list(docs)
    # Mixed directions: stable multi-pass sort from the least significant key up.
    for parts, descending in reversed(fields):
        result.sort(key=lambda d: _doc_sort_key(d, parts, descending), reverse=descending)
    return result[:limit] if limit > 0 else result


def _doc_sort_key(doc: dict[str, Any], parts: tuple[str, ...], descending: bool) -> tuple:
    if len(parts) == 1:
        value = doc.get(parts[0])  # missing sorts as null, like MongoDB
        return sort_key(value, descending)
    values = path_values(doc, parts)
    if not values:
        return (1,)
    if len(values) == 1:
        return sort_key(values[0], descending)
    keys = [sort_key(v, descending) for v in values]
    return max(keys) if descending else min(keys)


def iter_unique(values: list[Any]) -> Iterator[Any]:
    """Yield values once each under MongoDB equality (for distinct / $addToSet)."""
    seen: set[Hashable] = set()
    for value in values:
        key = hkey(value)
        if key not in seen:
            seen.add(key)
            yield value
