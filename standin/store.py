"""In-memory collections: documents keyed by ``_id``, index maps, and the candidate planner.

Invariant that makes the lock-free parts of the server safe: a stored document is never
mutated in place.  Updates build a new document (copying only the containers along the
modified paths, see ``updates.py``) and swap it in, so a cursor or snapshot that still holds the
old object sees a consistent, frozen version.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Any

import bson
from mongomock import OperationFailure
from mongomock.filtering import filter_applies
from sortedcontainers import SortedList

from .errors import BAD_VALUE, DOCUMENT_AFTER_UPDATE_TOO_LARGE, CommandError, DuplicateKey
from .fastmatch import fast_match
from .indexes import Index, KeyTuple
from .keys import first_value, hkey, is_plain_scalar, sort_key

ID_INDEX_SPEC = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
# Upper bound on the number of key combinations an `$in` filter may expand to before the
# planner prefers a scan of a shorter prefix.
_MAX_LOOKUP_COMBINATIONS = 10_000
# BSON type brackets (keys._scalar_key ranks) a range on an ordered index may cover: strings,
# ObjectIds and dates (numbers are left to the general path: NaN and mixed types).
_RANGE_BRACKETS = {3, 7, 9}
_RANGE_OPERATORS = {"$gt", "$gte", "$lt", "$lte"}

Doc = dict[str, Any]
# mongod's limit on one stored document (BSONObjMaxUserSize), enforced on insert and update.
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024


def matches(filt: dict[str, Any], doc: Doc) -> bool:
    """mongomock's query matcher, with its errors mapped to a MongoDB command error (and a
    fast path for the simple shapes of the enrollment hot path, see fastmatch)."""
    decided = fast_match(filt, doc)
    if decided is not None:
        return decided
    # Top-level conditions are ANDed: decide the simple ones here (the array guard of the
    # counting write among them) and hand only the others to mongomock, so a guard next to
    # a condition the fast matcher cannot decide (a window's `$not`) stays cheap.
    rest = {}
    for path, cond in filt.items():
        one = fast_match({path: cond}, doc)
        if one is False:
            return False
        if one is None:
            rest[path] = cond
    try:
        return filter_applies(rest, doc)
    except OperationFailure as exc:
        raise CommandError(BAD_VALUE, str(exc)) from exc


class Collection:
    def __init__(self, db_name: str, name: str) -> None:
        self.db_name = db_name
        self.name = name
        self.docs: dict[Hashable, Doc] = {}  # hkey(_id) -> document, in insertion order
        self._seq: dict[Hashable, int] = {}  # natural order, to order index-narrowed results
        self._counter = itertools.count()
        self.indexes: dict[str, Index] = {}  # secondary indexes; _id is `docs` itself
        # hkey(_id) -> an upper bound on the document's BSON size (exact after an insert).
        self._sizes: dict[Hashable, int] = {}

    @property
    def namespace(self) -> str:
        return f"{self.db_name}.{self.name}"

    # ------------------------------------------------------------------------------ writes

    def insert(self, doc: Doc) -> None:
        """Store a new document (which must carry ``_id``), enforcing unique indexes and the
        16 MiB limit (with mongod's error: BadValue, "object to insert too large")."""
        id_key = hkey(doc["_id"])
        if id_key in self.docs:
            raise DuplicateKey(self.namespace, "_id_", {"_id": 1}, {"_id": doc["_id"]})
        size = len(bson.encode(doc))  # C speed; the document just arrived in BSON anyway
        if size > MAX_BSON_OBJECT_SIZE:
            raise CommandError(
                BAD_VALUE,
                f"object to insert too large. size in bytes: {size},"
                f" max size: {MAX_BSON_OBJECT_SIZE}",
            )
        staged = [(index, index.keys_for(doc)) for index in self.indexes.values()]
        for index, keys in staged:
            if index.conflict(keys, id_key) is not None:
                raise self._duplicate(index, doc)
        seq = next(self._counter)
        for index, keys in staged:
            index.add(id_key, keys, doc, seq)
        self.docs[id_key] = doc
        self._sizes[id_key] = size
        self._seq[id_key] = seq

    def replace(self, old: Doc, new: Doc, *, growth: int | None = None) -> None:
        """Swap ``old`` for ``new`` (same ``_id``), enforcing unique indexes and the 16 MiB
        limit (mongod's code 17419).

        ``growth`` bounds how many bytes ``new`` may be larger than ``old`` (None: unknown).
        Encoding a big document costs about 1 ms per 100 kB, so the size is measured only
        when the bound could cross the limit; otherwise the bound is what is remembered.
        """
        id_key = hkey(old["_id"])
        size = self._sizes[id_key] + growth if growth is not None else MAX_BSON_OBJECT_SIZE + 1
        if size > MAX_BSON_OBJECT_SIZE:
            size = len(bson.encode(new))
            if size > MAX_BSON_OBJECT_SIZE:
                raise CommandError(
                    DOCUMENT_AFTER_UPDATE_TOO_LARGE,
                    f"Resulting document after update is larger than {MAX_BSON_OBJECT_SIZE}",
                )
        staged: list[tuple[Index, list[KeyTuple], list[KeyTuple]]] = []
        for index in self.indexes.values():
            old_keys, new_keys = index.keys_for(old), index.keys_for(new)
            if old_keys != new_keys:
                if index.conflict(new_keys, id_key) is not None:
                    raise self._duplicate(index, new)
                staged.append((index, old_keys, new_keys))
        seq = self._seq[id_key]
        for index, old_keys, new_keys in staged:
            index.remove(id_key, old_keys, old, seq)
            index.add(id_key, new_keys, new, seq)
        self.docs[id_key] = new
        self._sizes[id_key] = size

    def delete(self, doc: Doc) -> None:
        id_key = hkey(doc["_id"])
        for index in self.indexes.values():
            index.remove(id_key, index.keys_for(doc), doc, self._seq[id_key])
        del self.docs[id_key]
        del self._sizes[id_key]
        del self._seq[id_key]

    def add_index(self, index: Index) -> None:
        """Build a new index over the existing documents; fails on duplicates if unique."""
        for id_key, doc in self.docs.items():
            keys = index.keys_for(doc)
            if index.conflict(keys, id_key) is not None:
                error = self._duplicate(index, doc)
                index.clear()
                raise error
            index.add(id_key, keys, doc, self._seq[id_key])
        self.indexes[index.name] = index

    def _duplicate(self, index: Index, doc: Doc) -> DuplicateKey:
        key_value = {field: first_value(doc, field) for field in index.fields}
        return DuplicateKey(self.namespace, index.name, dict(index.key), key_value)

    # ------------------------------------------------------------------------------- reads

    def find(self, filt: dict[str, Any] | None, limit: int = 0) -> list[Doc]:
        """Documents matching ``filt`` in natural order; stops after ``limit`` if > 0.

        The result is a list (fully materialised), so callers may write while walking it.
        """
        if not filt:
            docs = self.docs.values()
            return list(itertools.islice(docs, limit) if limit > 0 else docs)
        candidates = self.candidates(filt)
        pool: Iterable[Doc] = self.docs.values() if candidates is None else candidates
        found = (doc for doc in pool if matches(filt, doc))
        return list(itertools.islice(found, limit) if limit > 0 else found)

    def candidates(self, filt: dict[str, Any]) -> list[Doc] | None:
        """A superset of the documents matching ``filt`` found through ``_id`` or an index.

        None means no index applies and the caller must scan the collection.
        """
        equalities = _equality_conditions(filt)
        if not equalities:
            return None
        if "_id" in equalities:
            docs = self.docs
            found = (docs.get(hkey(v)) for v in equalities["_id"])
            return [d for d in found if d is not None]
        best: tuple[Index, int] | None = None
        for index in self.indexes.values():
            if not index.maintained:
                continue
            covered = 0
            for field in index.fields:
                if field not in equalities:
                    break
                covered += 1
            if covered and (best is None or covered > best[1]):
                best = (index, covered)
        if best is None:
            return None
        index, covered = best
        value_lists = [[hkey(v) for v in equalities[f]] for f in index.fields[:covered]]
        while covered > 1 and _product_size(value_lists) > _MAX_LOOKUP_COMBINATIONS:
            covered -= 1
            value_lists.pop()
        ids: dict[Hashable, None] = {}
        for prefix in itertools.product(*value_lists):
            ids.update(dict.fromkeys(index.lookup(prefix)))
        if len(ids) > 1:
            seq = self._seq
            return [self.docs[i] for i in sorted(ids, key=seq.__getitem__)]
        return [self.docs[i] for i in ids]

    # ------------------------------------------------------------- ordered index paths

    def _ordered_index(
        self, filt: dict[str, Any], last: str, extra_ok: bool
    ) -> tuple[Index, KeyTuple] | None:
        """An index whose fields are equality conditions of ``filt`` (one value each) and then
        ``last``, usable in order (ordinary, not multikey, sparse or partial), and holding
        every equality of ``filt`` (else an index on more of them may narrow further), with
        the prefix of key values; with ``extra_ok`` False, ``filt`` may hold nothing else but
        a condition on ``last``."""
        equalities = _equality_conditions(filt)
        for index in self.indexes.values():
            if (
                not set(equalities) <= set(index.fields)  # another index may narrow more
                or not index.maintained
                or index.multikey
                or index.sparse
                or index.partial is not None
                or index.fields[-1] != last
                or any(len(equalities.get(f, ())) != 1 for f in index.fields[:-1])
            ):
                continue
            if not extra_ok and (
                set(filt) != set(index.fields) or any(_compound(filt[f]) for f in index.fields[:-1])
            ):
                continue
            if any(v not in (1, -1) for v in index.key.values()):
                continue
            return index, tuple(hkey(equalities[f][0]) for f in index.fields[:-1])
        return None

    def _ordered(self, index: Index, prefix: KeyTuple) -> Any:
        """The bucket of ``prefix`` sorted by the index's last field, built on first use."""
        ordered = index.ordered.get(prefix)
        if ordered is None:
            seq, docs = self._seq, self.docs
            ids = index.lookup(prefix)
            ordered = SortedList(index.order_entry(docs[i], seq[i], i) for i in ids)
            index.ordered[prefix] = ordered
        return ordered

    def find_ordered(
        self, filt: dict[str, Any] | None, sort: dict[str, Any], limit: int
    ) -> list[Doc] | None:
        """The first ``limit`` documents matching ``filt`` in ``sort`` order, walking an
        index in order (equality prefix, then the sort field, optionally a range on it); None
        when no index serves it. Ascending on any field; descending on ``_id`` only (unique,
        so the order of ties does not arise)."""
        if not filt or limit <= 0 or len(sort) != 1:
            return None
        ((field, direction),) = sort.items()
        descending = direction in (-1, -1.0)
        if direction not in (1, 1.0, -1, -1.0) or (descending and field != "_id"):
            return None
        found = self._ordered_index(filt, field, extra_ok=True)
        if found is None:
            return None
        bounds = _range_bounds(filt.get(field))
        if bounds is None:
            return None
        ordered = self._ordered(*found)
        lo, hi = bounds
        start = 0 if lo is None else ordered.bisect_left(lo)
        stop = len(ordered) if hi is None else ordered.bisect_left(hi)
        positions = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        docs, out = self.docs, []
        for position in positions:
            doc = docs[ordered[position][2]]
            if matches(filt, doc):
                out.append(doc)
                if len(out) == limit:
                    break
        return out

    def count_range(self, filt: dict[str, Any]) -> int | None:
        """How many documents match ``filt`` (equalities on an index prefix and a range on
        its last field, nothing else): a bisection of the ordered bucket; None otherwise."""
        for field, condition in filt.items():
            if isinstance(condition, dict) and set(condition) & _RANGE_OPERATORS:
                found = self._ordered_index(filt, field, extra_ok=False)
                bounds = _range_bounds(condition)
                if found is None or bounds is None or None in bounds:
                    return None
                index, prefix = found
                if not index.brackets.get(prefix, {}).get(bounds[0][0][0]):
                    return 0  # no value of that type under the prefix: nothing to sort
                ordered = self._ordered(index, prefix)
                return max(ordered.bisect_left(bounds[1]) - ordered.bisect_left(bounds[0]), 0)
        return None

    def group_counts(self, filt: dict[str, Any], field: str) -> dict[Any, int] | None:
        """{value of ``field``: documents} of the documents matching ``filt`` (equalities
        only), from an index with those fields and then ``field`` (not the last one); None
        when no index serves it."""
        equalities = _equality_conditions(filt)
        if set(equalities) != set(filt) or any(len(v) != 1 for v in equalities.values()):
            return None
        for index in self.indexes.values():
            depth = len(equalities)
            if (
                index.maintained
                and not index.multikey
                and not index.sparse
                and index.partial is None
                and 0 < depth < len(index.fields) - 1
                and set(index.fields[:depth]) == set(equalities)
                and index.fields[depth] == field
            ):
                prefix = tuple(hkey(equalities[f][0]) for f in index.fields[:depth])
                counts = index.children[depth - 1].get(prefix, {})
                if not all(v is None or type(v) in (str, int) for v in counts):
                    return None
                return dict(counts)
        return None

    # ------------------------------------------------------------------------------ admin

    def index_specs(self) -> list[dict[str, Any]]:
        return [dict(ID_INDEX_SPEC), *(index.spec for index in self.indexes.values())]

    def clear(self) -> None:
        self.docs.clear()
        self._sizes.clear()
        self._seq.clear()
        for index in self.indexes.values():
            index.clear()


def _compound(condition: Any) -> bool:
    """A condition that says more than one equality (``{$eq: x, $ne: y}``...)."""
    return isinstance(condition, dict) and set(condition) not in ({"$eq"}, {"$in"})


def _range_bounds(condition: Any) -> tuple[Any, Any] | None:
    """(low, high) entries bounding, in an ordered bucket, the values a condition on the
    sort field may match: None for no condition (whole bucket); a range of ``$gt/$gte/$lt/
    $lte`` within one type bracket of ``_RANGE_BRACKETS``; else None (not served)."""
    if condition is None:
        return (None, None)
    if not isinstance(condition, dict) or not condition or not set(condition) <= _RANGE_OPERATORS:
        return None
    keys = {op: sort_key(value) for op, value in condition.items()}
    brackets = {key[0] for key in keys.values()}
    if len(brackets) != 1 or not brackets <= _RANGE_BRACKETS:
        return None
    (bracket,) = brackets
    # Entries are (sort key, natural order, id key); sort keys are (bracket, value...).
    low, high = ((bracket,),), ((bracket + 0.5,),)  # every entry of the bracket between them
    after = float("inf")  # (key, inf) sorts after every (key, seq, id) entry
    for op, key in keys.items():
        if op == "$gt":
            low = max(low, (key, after))
        elif op == "$gte":
            low = max(low, (key,))
        elif op == "$lt":
            high = min(high, (key,))
        else:
            high = min(high, (key, after))
    return low, high


def _product_size(value_lists: list[list[Any]]) -> int:
    size = 1
    for values in value_lists:
        size *= max(len(values), 1)
    return size


def _equality_conditions(filt: dict[str, Any]) -> dict[str, list[Any]]:
    """Top-level ``field == value`` / ``field $in [...]`` conditions usable for index lookups.

    Every document matching ``filt`` satisfies each returned condition, so looking the values
    up in an index yields a superset of the matches.  ``$and`` branches are merged in.
    """
    found: dict[str, list[Any]] = {}
    for field, condition in filt.items():
        if field == "$and" and isinstance(condition, list):
            for branch in condition:
                if isinstance(branch, dict):
                    for sub_field, values in _equality_conditions(branch).items():
                        if sub_field not in found or len(values) < len(found[sub_field]):
                            found[sub_field] = values
            continue
        if field.startswith("$"):
            continue
        values = _condition_values(field, condition)
        if values is not None and (field not in found or len(values) < len(found[field])):
            found[field] = values
    return found


def _condition_values(field: str, condition: Any) -> list[Any] | None:
    if isinstance(condition, dict) and condition and next(iter(condition)).startswith("$"):
        if "$eq" in condition:
            return [condition["$eq"]] if _usable(field, condition["$eq"]) else None
        candidates = condition.get("$in")
        if isinstance(candidates, list) and all(_usable(field, v) for v in candidates):
            return candidates
        return None
    return [condition] if _usable(field, condition) else None


def _usable(field: str, value: Any) -> bool:
    # `_id` is never an array, so an embedded-document _id is an exact-match key as well.
    if field == "_id" and isinstance(value, dict):
        return not any(k.startswith("$") for k in value)
    return is_plain_scalar(value)
