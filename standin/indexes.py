"""Hash maps for declared indexes.

mongomock enforces unique indexes and answers equality queries by scanning the whole
collection, so its cost grows with the data.  Each declared index here keeps, for every key
prefix length, a dict ``prefix tuple -> ordered set of _id keys``; it is updated on every write,
enforces uniqueness in O(1) and lets the planner turn an equality / ``$in`` filter on an index
prefix into a handful of candidate documents.

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

from .keys import index_values

IdKey = Hashable
KeyTuple = tuple[Hashable, ...]


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

    def keys_for(self, doc: dict[str, Any]) -> list[KeyTuple]:
        """All index keys of ``doc`` (several when a key field holds an array)."""
        if not self.maintained:
            return []
        per_field: list[list[Hashable]] = []
        any_present = False
        for parts in self.paths:
            values, present = index_values(doc, parts)
            any_present = any_present or present
            per_field.append(values)
        if self.sparse and not any_present:
            return []
        if self.partial is not None and not filter_applies(self.partial, doc):
            return []
        if len(per_field) == 1:
            return [(v,) for v in per_field[0]]
        return list(itertools.product(*per_field))

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

    def add(self, id_key: IdKey, keys: Iterable[KeyTuple]) -> None:
        for key in keys:
            for length, mapping in enumerate(self.maps, start=1):
                holders = mapping.get(key[:length])
                if holders is None:
                    mapping[key[:length]] = {id_key: None}
                else:
                    holders[id_key] = None

    def remove(self, id_key: IdKey, keys: Iterable[KeyTuple]) -> None:
        # Callers always pass *all* keys of the document, so dropping the id from every prefix
        # bucket is correct even when several keys share a prefix.
        for key in keys:
            for length, mapping in enumerate(self.maps, start=1):
                prefix = key[:length]
                holders = mapping.get(prefix)
                if holders is not None:
                    holders.pop(id_key, None)
                    if not holders:
                        del mapping[prefix]

    def lookup(self, prefix: KeyTuple) -> Iterable[IdKey]:
        return self.maps[len(prefix) - 1].get(prefix, ())

    def clear(self) -> None:
        self.maps = [{} for _ in self.fields]


def normalize_spec(raw: dict[str, Any]) -> dict[str, Any]:
    """The listIndexes form of a createIndexes index document."""
    spec: dict[str, Any] = {"v": 2, "key": dict(raw["key"]), "name": raw["name"]}
    for option, value in raw.items():
        if option not in ("key", "name", "v", "ns"):
            spec[option] = value
    return spec


def default_index_name(key: dict[str, Any]) -> str:
    return "_".join(f"{field}_{direction}" for field, direction in key.items())
