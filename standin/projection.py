"""Find/findAndModify projections: inclusion, exclusion, dotted paths, ``$slice``, ``$elemMatch``.

Projected documents share leaf values with the stored document; that is safe because stored
documents are never mutated in place and projected ones are encoded to BSON right away.
"""

from __future__ import annotations

from typing import Any

from .errors import BAD_VALUE, CommandError
from .store import matches

Doc = dict[str, Any]


class Projection:
    """A compiled projection spec; ``apply`` returns the projected copy of a document."""

    def __init__(self, spec: dict[str, Any] | None) -> None:
        self.identity = not spec
        spec = dict(spec or {})
        self.include_id = _truthy(spec.pop("_id", True))
        self.operators: dict[str, dict[str, Any]] = {}
        plain: dict[str, bool] = {}
        for field, value in spec.items():
            if isinstance(value, dict):
                self.operators[field] = value
            elif field.endswith(".$"):
                plain[field[:-2]] = True  # positional projection: approximated by the array
            else:
                plain[field] = _truthy(value)
        modes = set(plain.values())
        if len(modes) > 1:
            raise CommandError(BAD_VALUE, "Cannot do exclusion on field in inclusion projection")
        if modes:
            self.inclusive = modes == {True}
        elif self.operators:
            # {$elemMatch} alone projects like an inclusion, {$slice} alone like an exclusion.
            self.inclusive = any("$elemMatch" in op for op in self.operators.values())
        else:
            # Only `_id` was given: {_id: 1} keeps only it, {_id: 0} drops only it.
            self.inclusive = self.include_id
        self.tree = _tree(plain)

    def apply(self, doc: Doc) -> Doc:
        if self.identity:
            return doc
        if self.inclusive:
            out = _include(doc, self.tree)
            if self.include_id and "_id" in doc:
                out = {"_id": doc["_id"], **out}
        else:
            out = _exclude(doc, self.tree) if self.tree else dict(doc)
            if not self.include_id:
                out.pop("_id", None)
        for field, operator in self.operators.items():
            _apply_operator(doc, out, field, operator)
        return out


def _truthy(value: Any) -> bool:
    return bool(value)


def _tree(fields: dict[str, bool]) -> dict[str, Any]:
    """{'a': 1, 'b.c': 1} -> {'a': True, 'b': {'c': True}}"""
    tree: dict[str, Any] = {}
    for field, flag in fields.items():
        node = tree
        parts = field.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = flag
    return tree


def _include(value: Any, tree: dict[str, Any]) -> Any:
    out: Doc = {}
    for key, item in value.items():
        sub = tree.get(key)
        if sub is None:
            continue
        if sub is True:
            out[key] = item
        elif isinstance(item, dict):
            out[key] = _include(item, sub)
        elif isinstance(item, list):
            # Inclusion inside an array keeps only sub-documents, projected.
            out[key] = [_include(e, sub) for e in item if isinstance(e, dict)]
    return out


def _exclude(value: Any, tree: dict[str, Any]) -> Any:
    out: Doc = {}
    for key, item in value.items():
        sub = tree.get(key)
        if sub is None:
            out[key] = item
        elif sub is False:
            continue
        elif isinstance(item, dict):
            out[key] = _exclude(item, sub)
        elif isinstance(item, list):
            out[key] = [_exclude(e, sub) if isinstance(e, dict) else e for e in item]
        else:
            out[key] = item
    return out


def _apply_operator(doc: Doc, out: Doc, field: str, operator: dict[str, Any]) -> None:
    value = doc.get(field)
    if "$slice" in operator:
        if not isinstance(value, list):
            if field in doc:
                out[field] = value
            return
        bounds = operator["$slice"]
        if isinstance(bounds, list):
            skip, limit = bounds
            start = skip if skip >= 0 else max(len(value) + skip, 0)
            out[field] = value[start : start + limit]
        else:
            out[field] = value[:bounds] if bounds >= 0 else value[bounds:]
    elif "$elemMatch" in operator:
        out.pop(field, None)
        if isinstance(value, list):
            for element in value:
                if matches({"v": {"$elemMatch": operator["$elemMatch"]}}, {"v": [element]}):
                    out[field] = [element]
                    break
    else:
        raise CommandError(BAD_VALUE, f"Unsupported projection option: {field}: {operator}")
