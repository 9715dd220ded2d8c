"""Hash maps for declared indexes.

mongomock enforces unique indexes and answers equality queries by scanning the whole
collection, so its cost grows with the data.  Each declared index here keeps, for every key
prefix length, a dict ``prefix tuple -> ordered set of _id keys``; it is updated on every write,
enforces uniqueness in O(1) and lets the planner turn an equality / ``$in`` filter on an index
prefix into a handful of candidate documents.

Two more paths answer a big course's roster and report without walking its documents:

- ``children``: for every prefix shorter than the key minus one field, how many keys hold
  each value of the next field (``(course_id,) -> {status: n}``): a ``$group`` by that
  field under an equality prefix reads the counts (``Collection.group_counts``).
- ``ordered``: for a prefix of all fields but the last, the bucket's documents sorted by the
  last field (BSON order, then natural order), built on first use and then maintained: a
  find sorted by the last field, or a range count on it, walks or bisects only the
  matching slice (``Collection.find_ordered``, ``Collection.count_range``).

Both are used only while the index is not multikey (no document has had an array, or
several values, in a key field), as MongoDB does for sorts.

Keys follow MongoDB's rules closely enough for correctness of candidate selection: a missing
field is indexed as null, arrays are indexed by element (multikey, cartesian product for
compound keys), sparse indexes skip documents missing every key field, and partial indexes skip
documents not matching ``partialFilterExpression``.  Special index types (text, 2dsphere, ...)
are recorded for ``listIndexes`` but keep no map.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Any

from mongomock.filtering import filter_applies
from sortedcontainers import SortedList

from .fastmatch import fast_match
from .keys import hkey, index_values, path_values, sort_key

IdKey = Hashable
KeyTuple = tuple[Hashable, ...]
_MISSING = object()


class Index:
    """One declared secondary index and its hash maps."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec  # as reported by listIndexes
        self.name: str = spec["name"]
        self.key: dict[str, Any] = dict(spec["key"])
        self.fields: list[str] = list(self.key)
        self.paths: list[tuple[str, ...]] = [tuple(f.split(".")) for f in self.fields]
        self.unique = bool(spec.get("unique"))
        self.sparse = bool(spec.get("sparse"))
        self.partial: dict[str, Any] | None = spec.get("partialFilterExpression")
        # Only ordinary (1 / -1) and hashed keys answer equality lookups; text/geo do not.
        self.maintained = all(
            v in (1, -1, "hashed") or isinstance(v, float) for v in self.key.values()
        )
        # maps[i]: prefix of length i + 1 -> {id key: None} (a dict as an insertion-ordered set)
        self.maps: list[dict[KeyTuple, dict[IdKey, None]]] = [{} for _ in self.fields]
        # children[i]: prefix of length i + 1 -> {value of field i + 1: number of keys}, for
        # the fields before the last one.
        self.children: list[dict[KeyTuple, dict[Hashable, int]]] = [{} for _ in self.fields[1:-1]]
        # prefix of all fields but the last -> SortedList of (sort key of the last field,
        # natural order, id key): built on first use by the collection, then maintained.
        self.ordered: dict[KeyTuple, SortedList] = {}
        # prefix of all fields but the last -> {BSON type bracket of the last field: keys},
        # kept always: a range in a bracket no document has is empty without sorting.
        self.brackets: dict[KeyTuple, dict[int, int]] = {}
        self.multikey = False
        # Every key field is a top-level field: a document without arrays in them has exactly
        # the one key of its values, read with `dict.get` (`keys_for`, `order_entry`). A bulk
        # insert computes the keys of every document for every index, and the general path
        # (dotted paths, arrays) cost about 5 us per document and index.
        self.top_level = all(len(parts) == 1 for parts in self.paths)

    def keys_for(self, doc: dict[str, Any]) -> list[KeyTuple]:
        """All index keys of ``doc`` (several when a key field holds an array)."""
        if not self.maintained:
            return []
        if self.top_level:
            key = []
            any_present = False
            for name in self.fields:
                value = doc.get(name, _MISSING)
                if value is _MISSING:
                    key.append(None)  # a missing field is indexed as null
                elif isinstance(value, list):
                    return self._keys_for_paths(doc)  # multikey: the general path
                else:
                    any_present = True
                    key.append(hkey(value))
            if self.sparse and not any_present:
                return []
            if self.partial is not None and not self._in_partial(doc):
                return []
            # One key, no array along any path: `multikey` stays as it is.
            return [tuple(key)]
        return self._keys_for_paths(doc)

    def _in_partial(self, doc: dict[str, Any]) -> bool:
        """Whether ``doc`` matches ``partialFilterExpression`` (the fast matcher decides the
        simple shapes, as the query matcher does; mongomock the others)."""
        decided = fast_match(self.partial, doc)
        return filter_applies(self.partial, doc) if decided is None else decided

    def _keys_for_paths(self, doc: dict[str, Any]) -> list[KeyTuple]:
        per_field: list[list[Hashable]] = []
        any_present = False
        for parts in self.paths:
            values, present = index_values(doc, parts)
            any_present = any_present or present
            per_field.append(values)
        if self.sparse and not any_present:
            return []
        if self.partial is not None and not self._in_partial(doc):
            return []
        if len(per_field) == 1:
            keys = [(v,) for v in per_field[0]]
        else:
            keys = list(itertools.product(*per_field))
        if not self.multikey and (len(keys) > 1 or any(self._array_at(doc, p) for p in self.paths)):
            self.multikey = True
            self.ordered.clear()
        return keys

    @staticmethod
    def _array_at(doc: dict[str, Any], parts: tuple[str, ...]) -> bool:
        """An array along the path or at its end (a one-element array gives one key)."""
        if len(parts) == 1:
            return isinstance(doc.get(parts[0]), list)
        return any(
            isinstance(v, list)
            for i in range(1, len(parts) + 1)
            for v in path_values(doc, parts[:i])
        )

    def conflict(self, keys: Iterable[KeyTuple], id_key: IdKey) -> KeyTuple | None:
        """The first key of ``keys`` already held by another document, if this index is unique."""
        if not self.unique:
            return None
        full = self.maps[-1]
        for key in keys:
            holders = full.get(key)
            if holders and (len(holders) > 1 or id_key not in holders):
                return key
        return None

    def add(self, id_key: IdKey, keys: Iterable[KeyTuple], doc: Any = None, seq: int = 0) -> None:
        # Ordered paths serve non-multikey indexes only: one entry per document, made once.
        entry = (
            self.order_entry(doc, seq, id_key) if doc is not None and not self.multikey else None
        )
        for key in keys:
            for length, mapping in enumerate(self.maps, start=1):
                holders = mapping.get(key[:length])
                if holders is None:
                    mapping[key[:length]] = {id_key: None}
                else:
                    holders[id_key] = None
            for length, counts in enumerate(self.children, start=1):
                child = counts.setdefault(key[:length], {})
                child[key[length]] = child.get(key[length], 0) + 1
            if entry is not None:
                held = self.brackets.setdefault(key[:-1], {})
                held[entry[0][0]] = held.get(entry[0][0], 0) + 1
            ordered = self.ordered.get(key[:-1]) if self.ordered and entry else None
            if ordered is not None:
                ordered.add(entry)

    def remove(
        self, id_key: IdKey, keys: Iterable[KeyTuple], doc: Any = None, seq: int = 0
    ) -> None:
        # Callers always pass *all* keys of the document, so dropping the id from every prefix
        # bucket is correct even when several keys share a prefix.
        entry = (
            self.order_entry(doc, seq, id_key) if doc is not None and not self.multikey else None
        )
        for key in keys:
            for length, counts in enumerate(self.children, start=1):
                child = counts.get(key[:length])
                if child is not None and key[length] in child:
                    child[key[length]] -= 1
                    if not child[key[length]]:
                        del child[key[length]]
                        if not child:
                            del counts[key[:length]]
            held = self.brackets.get(key[:-1]) if entry is not None else None
            if held is not None and entry[0][0] in held:
                held[entry[0][0]] -= 1
                if not held[entry[0][0]]:
                    del held[entry[0][0]]
                    if not held:
                        del self.brackets[key[:-1]]
            ordered = self.ordered.get(key[:-1]) if self.ordered and entry else None
            if ordered is not None:
                ordered.discard(entry)
            for length, mapping in enumerate(self.maps, start=1):
                prefix = key[:length]
                holders = mapping.get(prefix)
                if holders is not None:
                    holders.pop(id_key, None)
                    if not holders:
                        del mapping[prefix]

    def lookup(self, prefix: KeyTuple) -> Iterable[IdKey]:
        if not prefix:  # a single-field index: the whole (indexed) collection
            return {i: None for holders in self.maps[0].values() for i in holders}
        return self.maps[len(prefix) - 1].get(prefix, ())

    def order_entry(self, doc: dict[str, Any], seq: int, id_key: IdKey) -> tuple:
        if self.top_level:  # missing sorts as null, as `path_values` finding nothing does
            return (sort_key(doc.get(self.fields[-1])), seq, id_key)
        values = path_values(doc, self.paths[-1])
        return (sort_key(values[0] if values else None), seq, id_key)

    def clear(self) -> None:
        self.maps = [{} for _ in self.fields]
        self.children = [{} for _ in self.fields[1:-1]]
        self.ordered = {}
        self.brackets = {}
        self.multikey = False


def normalize_spec(raw: dict[str, Any]) -> dict[str, Any]:
    """The listIndexes form of a createIndexes index document."""
    spec: dict[str, Any] = {"v": 2, "key": dict(raw["key"]), "name": raw["name"]}
    for option, value in raw.items():
        if option not in ("key", "name", "v", "ns"):
            spec[option] = value
    return spec


def default_index_name(key: dict[str, Any]) -> str:
    return "_".join(f"{field}_{direction}" for field, direction in key.items())
