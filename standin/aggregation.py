"""Aggregation pipelines.

The stages the service uses on hot paths run natively: a leading ``$match`` goes through the
index-aware planner; ``$match $skip $limit $sort $count $unset``, inclusion/exclusion
``$project`` and ``$group`` with ``$sum`` accumulators are evaluated here (``countDocuments``
is ``[$match, $skip?, $limit?, $group {_id: 1, n: {$sum: 1}}]``).  Every other stage is handed
to mongomock's stage implementation.  Some of those mutate their input documents, so the
pipeline's documents are deep-copied once before the first such stage: stored documents must
never change in place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from mongomock import OperationFailure
from mongomock.aggregate import _PIPELINE_HANDLERS  # the stage table mongomock dispatches on

from .errors import BAD_VALUE, NOT_IMPLEMENTED, CommandError
from .keys import hkey, path_values, sort_documents
from .projection import Projection
from .store import Collection, matches

Doc = dict[str, Any]
# mongomock stages known to build fresh output documents without mutating their input.
_NON_MUTATING_STAGES = {"$group", "$project", "$count", "$sort", "$unwind", "$sample", "$bucket"}


def run_pipeline(
    collection: Collection | None,
    pipeline: list[dict[str, Any]],
    collections: dict[str, Collection],
) -> list[Doc]:
    """Run ``pipeline`` over ``collection`` (None: a missing collection, no documents)."""
    stages = [_split_stage(stage) for stage in pipeline]
    counted = _counted_by_index(collection, stages)
    if counted is not None:
        return counted
    if collection is None:
        docs: list[Doc] = []
    elif stages and stages[0][0] == "$match":
        docs = collection.find(stages.pop(0)[1])
    else:
        docs = list(collection.docs.values())
    owned = False  # False while `docs` may still be (or contain) stored documents
    for name, options in stages:
        native = _NATIVE_STAGES.get(name)
        result = native(docs, options) if native else None
        if result is not None:
            docs = result
            continue
        handler = _PIPELINE_HANDLERS.get(name)
        if handler is None:
            raise CommandError(
                NOT_IMPLEMENTED if name in _PIPELINE_HANDLERS or name in ("$merge",) else BAD_VALUE,
                f"Unrecognized or unsupported pipeline stage name: '{name}'",
            )
        if not owned and name not in _NON_MUTATING_STAGES:
            docs = copy.deepcopy(docs)
            owned = True
        try:
            docs = list(handler(docs, _LookupDatabase(collections), options))
        except OperationFailure as exc:
            raise CommandError(BAD_VALUE, str(exc)) from exc
        except NotImplementedError as exc:
            raise CommandError(NOT_IMPLEMENTED, str(exc)) from exc
    return docs


def _counted_by_index(
    collection: Collection | None, stages: list[tuple[str, Any]]
) -> list[Doc] | None:
    """``[$match, $group]`` counting documents (every accumulator ``{$sum: <constant>}``),
    answered from an index without reading the documents: grouped by a field that follows
    the match's equality fields in an index (its per-value key counts), or by a constant
    over equalities and a range on an index's last field (``countDocuments``: a bisection
    of the ordered bucket). None when the shape or the indexes do not allow it."""
    if collection is None or len(stages) != 2 or [s[0] for s in stages] != ["$match", "$group"]:
        return None
    filt, spec = stages[0][1], stages[1][1]
    if not isinstance(filt, dict) or not isinstance(spec, dict) or "_id" not in spec:
        return None
    constants = _sum_operands(spec)
    if constants is None or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in constants.values()
    ):
        return None
    group_id = spec["_id"]
    if isinstance(group_id, str) and group_id.startswith("$"):
        if "." in group_id:
            return None
        counts = collection.group_counts(filt, group_id[1:])
        if counts is None:
            return None
        return [
            {"_id": value, **{f: n * c for f, c in constants.items()}}
            for value, n in counts.items()
        ]
    if isinstance(group_id, dict | list):
        return None
    total = collection.count_range(filt)
    if total is None:
        return None
    return [{"_id": group_id, **{f: total * c for f, c in constants.items()}}] if total else []


def _split_stage(stage: Any) -> tuple[str, Any]:
    if not isinstance(stage, dict) or len(stage) != 1:
        raise CommandError(
            BAD_VALUE, "A pipeline stage specification object must contain exactly one field."
        )
    ((name, options),) = stage.items()
    if name in ("$out", "$merge"):
        raise CommandError(NOT_IMPLEMENTED, f"{name} is not supported by the stand-in")
    return name, options


# ------------------------------------------------------------------------------ native stages
# Each returns the new document list, or None to fall back to mongomock's implementation.


def _match(docs: list[Doc], spec: Any) -> list[Doc]:
    return [doc for doc in docs if matches(spec, doc)]


def _skip(docs: list[Doc], count: Any) -> list[Doc]:
    return docs[int(count) :]


def _limit(docs: list[Doc], count: Any) -> list[Doc]:
    return docs[: int(count)]


def _sort(docs: list[Doc], spec: Any) -> list[Doc]:
    return sort_documents(docs, spec)


def _count(docs: list[Doc], field: Any) -> list[Doc] | None:
    if not isinstance(field, str) or not field or field.startswith("$") or "." in field:
        return None  # let mongomock produce the validation error
    return [{field: len(docs)}] if docs else []


def _unset(docs: list[Doc], fields: Any) -> list[Doc]:
    names = [fields] if isinstance(fields, str) else list(fields)
    projection = Projection(dict.fromkeys(names, 0))
    return [projection.apply(doc) for doc in docs]


def _project(docs: list[Doc], spec: Any) -> list[Doc] | None:
    if not isinstance(spec, dict) or not all(
        isinstance(v, bool | int | float) for v in spec.values()
    ):
        return None  # computed fields: mongomock's expression engine
    projection = Projection(spec)
    return [projection.apply(doc) for doc in docs]


def _group(docs: list[Doc], spec: Any) -> list[Doc] | None:
    """``$group`` whose accumulators are all ``$sum`` of a constant or a field path."""
    if not isinstance(spec, dict) or "_id" not in spec:
        return None
    group_id = spec["_id"]
    key_of = _group_key(group_id)
    if key_of is None:
        return None
    operands = _sum_operands(spec)
    if operands is None:
        return None
    summers: list[tuple[str, Callable[[Doc], Any]]] = []
    for field, operand in operands.items():
        if isinstance(operand, str) and operand.startswith("$"):
            summers.append((field, _path_getter(operand[1:])))
        elif isinstance(operand, int | float) and not isinstance(operand, bool):
            summers.append((field, lambda _doc, constant=operand: constant))
        else:
            return None
    groups: dict[Hashable, tuple[Any, dict[str, Any]]] = {}
    for doc in docs:
        value = key_of(doc)
        bucket = groups.get(hkey(value))
        if bucket is None:
            bucket = groups[hkey(value)] = (value, dict.fromkeys((f for f, _ in summers), 0))
        totals = bucket[1]
        for field, getter in summers:
            totals[field] = _add(totals[field], getter(doc))
    return [{"_id": value, **totals} for value, totals in groups.values()]


def _sum_operands(spec: dict[str, Any]) -> dict[str, Any] | None:
    """{output field: operand} of a ``$group`` whose accumulators are all ``$sum``; else None."""
    operands = {}
    for field, accumulator in spec.items():
        if field == "_id":
            continue
        if not isinstance(accumulator, dict) or list(accumulator) != ["$sum"]:
            return None
        operands[field] = accumulator["$sum"]
    return operands


def _group_key(group_id: Any) -> Callable[[Doc], Any] | None:
    if isinstance(group_id, str) and group_id.startswith("$"):
        return _path_getter(group_id[1:])
    if isinstance(group_id, dict | list):
        return None  # compound or computed keys: mongomock
    return lambda _doc: group_id


def _path_getter(path: str) -> Callable[[Doc], Any]:
    parts = tuple(path.split("."))
    if len(parts) == 1:
        return lambda doc: doc.get(parts[0])

    def get(doc: Doc) -> Any:
        values = path_values(doc, parts)
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    return get


def _add(total: Any, value: Any) -> Any:
    # $sum ignores non-numeric values and keeps ints exact.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal128):
        return total
    if isinstance(value, Decimal128) or isinstance(total, Decimal128):
        left = total.to_decimal() if isinstance(total, Decimal128) else Decimal(str(total))
        right = value.to_decimal() if isinstance(value, Decimal128) else Decimal(str(value))
        return Decimal128(left + right)
    return total + value


_NATIVE_STAGES: dict[str, Callable[[list[Doc], Any], list[Doc] | None]] = {
    "$match": _match,
    "$skip": _skip,
    "$limit": _limit,
    "$sort": _sort,
    "$count": _count,
    "$unset": _unset,
    "$project": _project,
    "$group": _group,
}


class _LookupDatabase:
    """The sliver of a mongomock Database that mongomock's ``$lookup`` stage calls."""

    def __init__(self, collections: dict[str, Collection]) -> None:
        self._collections = collections

    def get_collection(self, name: str) -> _LookupCollection:
        return _LookupCollection(self._collections.get(name))


class _LookupCollection:
    def __init__(self, collection: Collection | None) -> None:
        self._collection = collection

    def find(self, query: dict[str, Any]) -> list[Doc]:
        if self._collection is None:
            return []
        return copy.deepcopy(self._collection.find(query))
