"""Errors shaped like mongod's, so the driver raises the same exception types."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bson import ObjectId

# The codes used here (https://github.com/mongodb/mongo/blob/master/src/mongo/base/error_codes.yml)
BAD_VALUE = 2
FAILED_TO_PARSE = 9
TYPE_MISMATCH = 14
ILLEGAL_OPERATION = 20
NAMESPACE_NOT_FOUND = 26
INDEX_NOT_FOUND = 27
PATH_NOT_VIABLE = 28
CONFLICTING_UPDATE_OPERATORS = 40
CURSOR_NOT_FOUND = 43
NAMESPACE_EXISTS = 48
COMMAND_NOT_FOUND = 59
IMMUTABLE_FIELD = 66
INVALID_OPTIONS = 72
INVALID_NAMESPACE = 73
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
NOT_IMPLEMENTED = 238
INTERNAL_ERROR = 1
DUPLICATE_KEY = 11000
# mongod's assertion code for an update whose result exceeds the 16 MiB document limit.
DOCUMENT_AFTER_UPDATE_TOO_LARGE = 17419

CODE_NAMES = {
    BAD_VALUE: "BadValue",
    FAILED_TO_PARSE: "FailedToParse",
    TYPE_MISMATCH: "TypeMismatch",
    ILLEGAL_OPERATION: "IllegalOperation",
    NAMESPACE_NOT_FOUND: "NamespaceNotFound",
    INDEX_NOT_FOUND: "IndexNotFound",
    PATH_NOT_VIABLE: "PathNotViable",
    CONFLICTING_UPDATE_OPERATORS: "ConflictingUpdateOperators",
    CURSOR_NOT_FOUND: "CursorNotFound",
    NAMESPACE_EXISTS: "NamespaceExists",
    COMMAND_NOT_FOUND: "CommandNotFound",
    IMMUTABLE_FIELD: "ImmutableField",
    INVALID_OPTIONS: "InvalidOptions",
    INVALID_NAMESPACE: "InvalidNamespace",
    INDEX_OPTIONS_CONFLICT: "IndexOptionsConflict",
    INDEX_KEY_SPECS_CONFLICT: "IndexKeySpecsConflict",
    NOT_IMPLEMENTED: "NotImplemented",
    INTERNAL_ERROR: "InternalError",
    DUPLICATE_KEY: "DuplicateKey",
    DOCUMENT_AFTER_UPDATE_TOO_LARGE: "Location17419",  # mongod names bare assertion codes so
}


class CommandError(Exception):
    """A failed command; becomes ``{ok: 0, errmsg, code, codeName, ...}`` on the wire."""

    def __init__(self, code: int, errmsg: str, **extra: Any) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def to_reply(self) -> dict[str, Any]:
        return {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": CODE_NAMES.get(self.code, "UnknownError"),
            **self.extra,
        }

    def write_error(self, index: int) -> dict[str, Any]:
        """The ``writeErrors`` entry for the ``index``-th operation of a write command."""
        return {"index": index, "code": self.code, "errmsg": self.errmsg, **self.extra}


class DuplicateKey(CommandError):
    def __init__(self, namespace: str, index_name: str, key_pattern: dict, key_value: dict):
        shown = ", ".join(f"{k}: {_shell_repr(v)}" for k, v in key_value.items())
        errmsg = (
            f"E11000 duplicate key error collection: {namespace} index: {index_name}"
            f" dup key: {{ {shown} }}"
        )
        super().__init__(DUPLICATE_KEY, errmsg, keyPattern=key_pattern, keyValue=key_value)


def _shell_repr(value: Any) -> str:
    """Roughly how mongod prints a key value in an E11000 message."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, ObjectId):
        return f"ObjectId('{value}')"
    if isinstance(value, dt.datetime):
        return f"new Date({int(value.timestamp() * 1000)})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
