"""MongoDB update operators applied copy-on-write.

``apply_update`` never mutates the stored document: it shallow-copies the top-level document
and every container along each modified path (an O(path) cost, not O(document)), so cursors
and snapshots holding the previous version stay consistent without a deep copy.

Supported: replacement documents, pipeline updates (via mongomock's aggregation stages),
``$set $unset $inc $mul $min $max $rename $setOnInsert $currentDate $push ($each $position
$slice $sort) $addToSet ($each) $pull $pullAll $pop $bit``, the positional ``$`` and the
all-positional ``$[]``.  Filtered positional ``$[name]`` (arrayFilters) is not supported.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import bson
from bson import Int64, ObjectId
from bson.decimal128 import Decimal128
from bson.timestamp import Timestamp
from mongomock.aggregate import process_pipeline

from .errors import (
    BAD_VALUE,
    FAILED_TO_PARSE,
    IMMUTABLE_FIELD,
    PATH_NOT_VIABLE,
    TYPE_MISMATCH,
    CommandError,
)
from .keys import hkey, sort_documents, sort_key
from .store import matches

Doc = dict[str, Any]
_MISSING: Any = object()


def is_operator_update(update: Any) -> bool:
    return isinstance(update, dict) and bool(update) and next(iter(update)).startswith("$")


# Operators whose effect on a document's BSON size is bounded by the size of their operand,
# unless a path pads an array (a numeric part) or fans out over it (`$[]`).
_SIZE_BOUNDED = {
    "$set", "$setOnInsert", "$unset", "$inc", "$mul", "$min", "$max", "$rename",
    "$currentDate", "$push", "$addToSet", "$pull", "$pullAll", "$pop", "$bit",
}  # fmt: skip


def growth_bound(update: Any) -> int | None:
    """An upper bound on the bytes ``update`` can add to a document's BSON size, or None when
    there is no cheap one (replacements, pipelines, array padding or fan-out).

    Each byte of the operand becomes at most 8 in the document: a dotted path turns into
    nested documents (about 8 bytes per 2-byte level), a pushed element gains an array index
    key, `$inc` widens an int32 to 8 bytes, `$currentDate` turns `true` into 8 bytes.
    """
    if not is_operator_update(update):
        return None
    for operator, fields in update.items():
        if operator not in _SIZE_BOUNDED or not isinstance(fields, dict):
            return None
        for path in fields:
            if any(part == "$[]" or part.isdigit() for part in str(path).split(".")):
                return None
    return 8 * len(bson.encode(update)) + 64


def apply_update(doc: Doc, update: Any, filt: dict[str, Any], *, is_insert: bool) -> Doc:
    """The document that results from applying ``update`` to ``doc`` (which is left intact)."""
    if isinstance(update, list):
        new = _apply_pipeline(doc, update)
    elif is_operator_update(update):
        writer = _Writer(doc, filt)
        for operator, fields in update.items():
            handler = _OPERATORS.get(operator)
            if handler is None:
                raise CommandError(
                    FAILED_TO_PARSE,
                    f"Unknown modifier: {operator}. Expected a valid update modifier",
                )
            if operator == "$setOnInsert" and not is_insert:
                continue
            if not isinstance(fields, dict):
                raise CommandError(
                    FAILED_TO_PARSE,
                    f"Modifiers operate on fields but we found another type instead: {operator}",
                )
            for path, argument in fields.items():
                for parts in writer.expand_path(path):
                    handler(writer, parts, argument)
        new = writer.root
    else:
        if any(k.startswith("$") for k in update):
            raise CommandError(FAILED_TO_PARSE, "Mixing update operators and fields is not allowed")
        new = {"_id": doc["_id"], **update} if "_id" in doc else dict(update)
    if "_id" in doc and ("_id" not in new or hkey(new["_id"]) != hkey(doc["_id"])):
        raise CommandError(
            IMMUTABLE_FIELD,
            "Performing an update on the path '_id' would modify the immutable field '_id'",
        )
    return new


def upsert_seed(filt: dict[str, Any]) -> Doc:
    """The document an upsert starts from: the filter's equality conditions."""
    seed: Doc = {}
    writer = _Writer(seed, {})
    for key, condition in _flatten_and(filt):
        if key.startswith("$"):
            continue
        if isinstance(condition, dict) and condition and next(iter(condition)).startswith("$"):
            if "$eq" not in condition:
                continue
            condition = condition["$eq"]
        _op_set(writer, key.split("."), condition)
    return writer.root


def with_id_first(doc: Doc) -> Doc:
    """MongoDB stores ``_id`` as the first field; generate one if absent."""
    if "_id" not in doc:
        return {"_id": ObjectId(), **doc}
    if next(iter(doc)) != "_id":
        return {"_id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}
    return doc


def _apply_pipeline(doc: Doc, pipeline: list[dict[str, Any]]) -> Doc:
    # Rare path: mongomock's stages may mutate their input, so hand them a private copy.
    results = list(process_pipeline([copy.deepcopy(doc)], None, pipeline, None))
    return results[0]


def _flatten_and(filt: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, condition in filt.items():
        if key == "$and" and isinstance(condition, list):
            for branch in condition:
                if isinstance(branch, dict):
                    pairs.extend(_flatten_and(branch))
        else:
            pairs.append((key, condition))
    return pairs


class _Writer:
    """Copy-on-write access to the document being updated."""

    def __init__(self, doc: Doc, filt: dict[str, Any]) -> None:
        self.root: Doc = dict(doc)
        self.filter = filt
        # Containers created by this update (safe to mutate); keyed by id, values keep them alive.
        self.owned: dict[int, Any] = {id(self.root): self.root}

    def _own(self, container: Any, key: Any, child: Any) -> Any:
        if id(child) in self.owned:
            return child
        child = dict(child) if isinstance(child, dict) else list(child)
        self.owned[id(child)] = child
        container[key] = child
        return child

    def parent(self, parts: list[str]) -> tuple[Any, str]:
        """The (owned) container that will hold the last path element; creates missing dicts."""
        found = self._parent(parts, create=True)
        if found is None:  # pragma: no cover - _parent only returns None when not creating
            raise _not_viable(parts[-1], self.root)
        return found

    def existing_parent(self, parts: list[str]) -> tuple[Any, str] | None:
        """The (owned) container holding the last path element, or None if the path is absent."""
        return self._parent(parts, create=False)

    def _parent(self, parts: list[str], create: bool) -> tuple[Any, str] | None:
        container: Any = self.root
        for position, part in enumerate(parts[:-1]):
            if isinstance(container, dict):
                child = container.get(part, _MISSING)
                key: Any = part
            elif isinstance(container, list) and part.isdigit():
                key = int(part)
                if key >= len(container) and create:
                    container.extend([None] * (key + 1 - len(container)))
                child = container[key] if key < len(container) else _MISSING
                if child is None and create:
                    child = _MISSING
            elif not create:
                return None  # e.g. $unset "list.field": nothing to remove
            else:
                raise _not_viable(parts[position], container)
            if child is _MISSING:
                if not create:
                    return None
                child = {}
                self.owned[id(child)] = child
                container[key] = child
            elif isinstance(child, dict | list):
                child = self._own(container, key, child)
            else:
                if not create:
                    return None
                raise _not_viable(parts[position + 1], {part: child})
            container = child
        return container, parts[-1]

    @staticmethod
    def get(container: Any, key: str) -> Any:
        if isinstance(container, dict):
            return container.get(key, _MISSING)
        if isinstance(container, list) and key.isdigit() and int(key) < len(container):
            return container[int(key)]
        return _MISSING

    @staticmethod
    def put(container: Any, key: str, value: Any) -> None:
        if isinstance(container, dict):
            container[key] = value
            return
        if not key.isdigit():
            raise _not_viable(key, container)
        index = int(key)
        if index >= len(container):
            container.extend([None] * (index + 1 - len(container)))
        container[index] = value

    def read(self, parts: list[str]) -> Any:
        value: Any = self.root
        for part in parts:
            value = self.get(value, part)
            if value is _MISSING:
                return _MISSING
        return value

    def expand_path(self, path: str) -> list[list[str]]:
        """Resolve ``$`` (first matching element) and ``$[]`` (every element) in a path."""
        parts = path.split(".")
        if "$" not in path:
            return [parts]
        results: list[list[str]] = []
        pending = [parts]
        while pending:
            current = pending.pop()
            for i, part in enumerate(current):
                if part == "$":
                    array = self.read(current[:i])
                    index = _positional_index(self.filter, ".".join(current[:i]), array)
                    pending.append([*current[:i], str(index), *current[i + 1 :]])
                    break
                if part == "$[]":
                    array = self.read(current[:i])
                    if isinstance(array, list):
                        for index in range(len(array)):
                            pending.append([*current[:i], str(index), *current[i + 1 :]])
                    break
                if part.startswith("$[") and part.endswith("]"):
                    raise CommandError(BAD_VALUE, "arrayFilters ($[identifier]) are not supported")
            else:
                results.append(current)
        return results


def _not_viable(field: str, container: Any) -> CommandError:
    return CommandError(PATH_NOT_VIABLE, f"Cannot create field '{field}' in element {container!r}")


def _positional_index(filt: dict[str, Any], array_path: str, array: Any) -> int:
    conditions = [
        ("v" + key[len(array_path) :], condition)
        for key, condition in _flatten_and(filt)
        if key == array_path or key.startswith(array_path + ".")
    ]
    if isinstance(array, list) and conditions:
        for index, element in enumerate(array):
            # Wrapping the element in a one-element array gives it array-match semantics.
            probe = {"v": [element]}
            if all(matches({key: condition}, probe) for key, condition in conditions):
                return index
    raise CommandError(
        BAD_VALUE, "The positional operator did not find the match needed from the query."
    )


# ------------------------------------------------------------------------------ operators


def _op_set(writer: _Writer, parts: list[str], value: Any) -> None:
    container, key = writer.parent(parts)
    writer.put(container, key, value)


def _op_unset(writer: _Writer, parts: list[str], _: Any) -> None:
    found = writer.existing_parent(parts)
    if found is None:
        return
    container, key = found
    if isinstance(container, dict):
        container.pop(key, None)
    elif key.isdigit() and int(key) < len(container):
        container[int(key)] = None  # $unset of an array element leaves null, like MongoDB


def _as_number(value: Any) -> Any:
    return value.to_decimal() if isinstance(value, Decimal128) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal128) and not isinstance(value, bool)


def _combine(current: Any, operand: Any, operation: Callable[[Any, Any], Any]) -> Any:
    if isinstance(current, Decimal128) or isinstance(operand, Decimal128):
        result = operation(Decimal(str(_as_number(current))), Decimal(str(_as_number(operand))))
        return Decimal128(result)
    result = operation(current, operand)
    if isinstance(result, int) and (isinstance(current, Int64) or isinstance(operand, Int64)):
        return Int64(result)
    return result


def _arithmetic(name: str, operation: Callable[[Any, Any], Any], zero: bool) -> Callable:
    def apply(writer: _Writer, parts: list[str], operand: Any) -> None:
        if not _is_number(operand):
            raise CommandError(TYPE_MISMATCH, f"Cannot {name} with non-numeric argument")
        container, key = writer.parent(parts)
        current = writer.get(container, key)
        if current is _MISSING:
            # $inc on a missing field sets the operand; $mul sets a zero of the operand's type.
            writer.put(
                container, key, _combine(0, operand, lambda a, b: a * b) if zero else operand
            )
            return
        if not _is_number(current):
            raise CommandError(
                TYPE_MISMATCH,
                f"Cannot apply ${name} to a value of non-numeric type. Field '{'.'.join(parts)}'"
                f" has non-numeric type {type(current).__name__}",
            )
        writer.put(container, key, _combine(current, operand, operation))

    return apply


def _extremum(keep_new: Callable[[tuple, tuple], bool]) -> Callable:
    def apply(writer: _Writer, parts: list[str], operand: Any) -> None:
        container, key = writer.parent(parts)
        current = writer.get(container, key)
        if current is _MISSING or keep_new(sort_key(operand), sort_key(current)):
            writer.put(container, key, operand)

    return apply


def _op_rename(writer: _Writer, parts: list[str], target: Any) -> None:
    if not isinstance(target, str):
        raise CommandError(BAD_VALUE, "The 'to' field for $rename must be a string")
    found = writer.existing_parent(parts)
    if found is None:
        return
    container, key = found
    value = writer.get(container, key)
    if value is _MISSING:
        return
    _op_unset(writer, parts, None)
    _op_set(writer, target.split("."), value)


def _op_current_date(writer: _Writer, parts: list[str], spec: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # BSON dates are millis
    if isinstance(spec, dict) and spec.get("$type") == "timestamp":
        _op_set(writer, parts, Timestamp(int(now.timestamp()), 1))
    else:
        _op_set(writer, parts, now)


def _array_at(writer: _Writer, parts: list[str], create: bool) -> tuple[Any, str, list] | None:
    found = writer.parent(parts) if create else writer.existing_parent(parts)
    if found is None:
        return None
    container, key = found
    current = writer.get(container, key)
    if current is _MISSING:
        return (container, key, []) if create else None
    if not isinstance(current, list):
        raise CommandError(
            BAD_VALUE,
            f"The field '{'.'.join(parts)}' must be an array but is of type "
            f"{type(current).__name__} in document {{_id: {writer.root.get('_id')!r}}}",
        )
    return container, key, current


def _array_for_write(writer: _Writer, parts: list[str]) -> tuple[Any, str, list]:
    found = _array_at(writer, parts, create=True)
    if found is None:  # pragma: no cover - _array_at only returns None when not creating
        raise _not_viable(parts[-1], writer.root)
    return found


def _each(argument: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(argument, dict) and "$each" in argument:
        values = argument["$each"]
        if not isinstance(values, list):
            raise CommandError(BAD_VALUE, "The argument to $each must be an array")
        return values, argument
    return [argument], {}


def _op_push(writer: _Writer, parts: list[str], argument: Any) -> None:
    container, key, current = _array_for_write(writer, parts)
    values, modifiers = _each(argument)
    limit = modifiers.get("$slice")
    position = modifiers.get("$position")
    order = modifiers.get("$sort")
    if position is None and order is None and limit is not None and limit < 0:
        # Append and keep the last |limit|: copy only what is kept, so a capped array costs
        # O(|limit|) per push however long it was, and the pushed values at most that too.
        keep = -limit
        tail = values[-keep:]
        start = max(len(current) - (keep - len(tail)), 0)
        writer.put(container, key, [*current[start:], *tail])
        return
    if position is None:
        new = [*current, *values]
    else:
        position = position if position >= 0 else max(len(current) + position, 0)
        new = [*current[:position], *values, *current[position:]]
    if order is not None:
        if isinstance(order, dict):
            new = sort_documents(new, order)
        elif all(type(v) is int or type(v) is Int64 for v in new):
            new.sort(reverse=order == -1)  # integers compare natively, in C
        else:
            new.sort(key=lambda v: sort_key(v, order == -1), reverse=order == -1)
    if limit is not None:
        new = new[:limit] if limit >= 0 else new[limit:]
    writer.put(container, key, new)


def _op_add_to_set(writer: _Writer, parts: list[str], argument: Any) -> None:
    container, key, current = _array_for_write(writer, parts)
    values, _ = _each(argument)
    present = {hkey(v) for v in current}
    new = list(current)
    for value in values:
        value_key = hkey(value)
        if value_key not in present:
            present.add(value_key)
            new.append(value)
    if len(new) != len(current) or writer.get(container, key) is _MISSING:
        writer.put(container, key, new)


def _pull_matcher(condition: Any) -> Callable[[Any], bool]:
    if isinstance(condition, dict) and condition:
        if next(iter(condition)).startswith("$"):
            # Operator condition on the element itself, e.g. {$gte: 6} or {$in: [...]}.
            return lambda element: matches({"v": condition}, {"v": element})
        # A document condition is a query on each (sub-document) element.
        return lambda element: isinstance(element, dict) and matches(condition, element)
    wanted = hkey(condition)
    return lambda element: hkey(element) == wanted


def _remove_where(writer: _Writer, parts: list[str], doomed: Callable[[Any], bool]) -> None:
    found = _array_at(writer, parts, create=False)
    if found is None:
        return
    container, key, current = found
    kept = [element for element in current if not doomed(element)]
    if len(kept) != len(current):
        writer.put(container, key, kept)


def _op_pull(writer: _Writer, parts: list[str], condition: Any) -> None:
    _remove_where(writer, parts, _pull_matcher(condition))


def _op_pull_all(writer: _Writer, parts: list[str], values: Any) -> None:
    if not isinstance(values, list):
        raise CommandError(BAD_VALUE, "$pullAll requires an array argument")
    doomed = {hkey(v) for v in values}
    _remove_where(writer, parts, lambda element: hkey(element) in doomed)


def _op_pop(writer: _Writer, parts: list[str], direction: Any) -> None:
    found = _array_at(writer, parts, create=False)
    if found is None or not found[2]:
        return
    container, key, current = found
    writer.put(container, key, current[1:] if direction == -1 else current[:-1])


def _op_bit(writer: _Writer, parts: list[str], spec: Any) -> None:
    container, key = writer.parent(parts)
    value = writer.get(container, key)
    value = 0 if value is _MISSING else value
    for operation, operand in spec.items():
        if operation == "and":
            value &= operand
        elif operation == "or":
            value |= operand
        elif operation == "xor":
            value ^= operand
        else:
            raise CommandError(BAD_VALUE, "The $bit modifier only supports 'and', 'or', 'xor'")
    writer.put(container, key, value)


_OPERATORS: dict[str, Callable[[_Writer, list[str], Any], None]] = {
    "$set": _op_set,
    "$setOnInsert": _op_set,
    "$unset": _op_unset,
    "$inc": _arithmetic("inc", lambda a, b: a + b, zero=False),
    "$mul": _arithmetic("mul", lambda a, b: a * b, zero=True),
    "$min": _extremum(lambda new, old: new < old),
    "$max": _extremum(lambda new, old: new > old),
    "$rename": _op_rename,
    "$currentDate": _op_current_date,
    "$push": _op_push,
    "$addToSet": _op_add_to_set,
    "$pull": _op_pull,
    "$pullAll": _op_pull_all,
    "$pop": _op_pop,
    "$bit": _op_bit,
}
