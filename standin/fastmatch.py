"""A fast matcher for the filter shapes on the enrollment hot path.

mongomock's `filter_applies` walks an array element by element through generic code: on a
course with 10,000 entries in `enrolled_users`, the guard `{"enrolled_users.user_id":
{"$ne": uid}}` cost the stand-in about 12 ms per enrollment (61 ms at 50,000). This
evaluates the simple shapes directly and answers None for anything else, which then goes
to mongomock as before:

- top-level equality on a scalar field;
- `$ne`/`$nin` of ints or strings, `$exists`, and `$lt`/`$lte`/`$gt`/`$gte` of a number, on
  a field, on a field of an array's subdocuments, on an array of scalars, or on one
  element of such an array (`applied.0`);
- `$or` of such filters.

That covers the membership guard of `courses.repository` (`applied: {$nin: [...]}`, `$or`
of `applied.511: {$exists: false}` and `applied.0: {$lt: op}`), in time linear in the
ledger and independent of everything else in the document.
"""

import operator
from collections.abc import Callable
from typing import Any

from bson import Int64

_OPERAND_TYPES = (int, Int64, str)
_VALUE_TYPES = frozenset({int, Int64, float, str, type(None)})
_NUMBER_TYPES = (int, Int64, float)
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": operator.lt,
    "$lte": operator.le,
    "$gt": operator.gt,
    "$gte": operator.ge,
}


def _excluded(op: str, operand: Any) -> set | None:
    items = [operand] if op == "$ne" else operand if op == "$nin" else None
    if not isinstance(items, list):
        return None
    if not all(type(x) in _OPERAND_TYPES for x in items):  # bools are not ints in MongoDB
        return None
    return set(items)


def _scalars(values: list[Any]) -> bool:
    types = _VALUE_TYPES
    return all(type(v) in types for v in values)


def _field(doc: dict[str, Any], path: str) -> tuple[bool, list[Any]] | None:
    """(present, the scalar values MongoDB compares) at `path`; None for other shapes.

    Paths have one dot at most: `field`, `doc.field`, `array.field` of subdocuments, or
    `array.N` of an array of scalars.
    """
    head, _, tail = path.partition(".")
    if "." in tail:
        return None
    if head not in doc:
        return False, []
    top = doc[head]
    if not tail:
        if isinstance(top, list):
            return (True, top) if _scalars(top) else None
        return (True, [top]) if type(top) in _VALUE_TYPES else None
    if isinstance(top, dict):
        if tail not in top:
            return False, []
        return (True, [top[tail]]) if type(top[tail]) in _VALUE_TYPES else None
    if not isinstance(top, list):
        return False, []
    if tail.isdigit():
        if not _scalars(top):
            return None  # `array.0` would also name a field "0" of subdocuments
        index = int(tail)
        return (True, [top[index]]) if index < len(top) else (False, [])
    values = []
    append, types = values.append, _VALUE_TYPES
    for element in top:
        if type(element) is not dict:
            return None
        if tail in element:
            value = element[tail]
            if type(value) not in types:
                return None
            append(value)
    return bool(values), values


def _condition(op: str, operand: Any, present: bool, values: list[Any]) -> bool | None:
    if op in ("$ne", "$nin"):
        excluded = _excluded(op, operand)
        if excluded is None:
            return None
        return excluded.isdisjoint(values)
    if op == "$exists":
        return present == operand if type(operand) is bool else None
    compare = _ORDER.get(op)
    if compare is None or type(operand) not in _NUMBER_TYPES:
        return None
    # Numbers compare with numbers only; other types never match a numeric bound.
    return any(type(v) in _NUMBER_TYPES and compare(v, operand) for v in values)


def fast_match(filt: dict[str, Any], doc: dict[str, Any]) -> bool | None:
    """True/False when this module can decide; None to defer to mongomock."""
    for path, cond in filt.items():
        if path == "$or":
            if not isinstance(cond, list) or not cond:
                return None
            branches = [fast_match(b, doc) if isinstance(b, dict) else None for b in cond]
            if None in branches:
                return None
            if not any(branches):
                return False
            continue
        if path.startswith("$"):
            return None
        if isinstance(cond, dict):
            if not cond or not all(op.startswith("$") for op in cond):
                return None
            found = _field(doc, path)
            if found is None:
                return None
            present, values = found
            for op, operand in cond.items():
                decided = _condition(op, operand, present, values)
                if decided is None:
                    return None
                if not decided:
                    return False
        elif "." in path or isinstance(cond, list | dict):
            return None
        else:
            if path not in doc:
                return None  # null/missing semantics: let mongomock decide
            value = doc[path]
            if isinstance(value, list | dict) or type(value) is bool or type(cond) is bool:
                return None
            if type(value) is not type(cond) and not (
                isinstance(value, int | float) and isinstance(cond, int | float)
            ):
                return None
            if value != cond:
                return False
    return True
