"""Command execution: the mongod-shaped answer to every command the service and driver send.

One ``Engine`` owns all databases; ``execute`` runs a command under a single lock, so each
command is atomic (an update of many documents included) and connection threads never see a
half-applied write.  Request envelope fields (``lsid``, ``txnNumber``, ``$clusterTime``,
``$readPreference``, ``readConcern``, ``writeConcern``, ``comment``, ``maxTimeMS``, ...) are
accepted and ignored.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import Int64
from bson.binary import Binary, UuidRepresentation
from bson.raw_bson import RawBSONDocument
from mongomock import OperationFailure

from . import aggregation
from .errors import (
    BAD_VALUE,
    COMMAND_NOT_FOUND,
    CURSOR_NOT_FOUND,
    FAILED_TO_PARSE,
    ILLEGAL_OPERATION,
    INDEX_KEY_SPECS_CONFLICT,
    INDEX_NOT_FOUND,
    INDEX_OPTIONS_CONFLICT,
    INTERNAL_ERROR,
    INVALID_NAMESPACE,
    INVALID_OPTIONS,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    NOT_IMPLEMENTED,
    CommandError,
)
from .indexes import Index, default_index_name, normalize_spec
from .keys import iter_unique, path_values, sort_documents
from .projection import Projection
from .store import ID_INDEX_SPEC, MAX_BSON_OBJECT_SIZE, Collection, matches
from .updates import (
    apply_update,
    growth_bound,
    is_operator_update,
    upsert_seed,
    with_id_first,
)

Doc = dict[str, Any]

SERVER_VERSION = "7.0.0"
MAX_WIRE_VERSION = 21  # MongoDB 7.0
MAX_MESSAGE_SIZE_BYTES = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
DEFAULT_BATCH_SIZE = 101
# Reply batches stop growing at this many bytes, like mongod's 16 MB batches.
_MAX_BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 64 * 1024
# Cursors not used for this long are dropped (clients that vanished without killCursors).
_CURSOR_IDLE_SECONDS = 600.0

_WRITE_COMMANDS = {
    "insert",
    "update",
    "delete",
    "findAndModify",
    "createIndexes",
    "dropIndexes",
    "drop",
    "dropDatabase",
    "create",
    "renameCollection",
}
# Legacy spellings mongod still accepts case-insensitively.
_ALIASES = {"ismaster": "isMaster", "buildinfo": "buildInfo", "findandmodify": "findAndModify"}


@dataclass
class Connection:
    """Per-connection facts some commands report."""

    id: int
    peer: str = ""


@dataclass
class _Cursor:
    id: int
    namespace: str
    docs: list[Doc]
    position: int
    projection: Projection
    last_used: float = field(default_factory=time.monotonic)


class Engine:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.databases: dict[str, dict[str, Collection]] = {}
        self.cursors: dict[int, _Cursor] = {}
        self.version = 0  # bumped by every write; the snapshotter compares it
        self.started = time.monotonic()
        self.shutdown_hook: Callable[[], None] | None = None
        self.connections_current = 0
        self.connections_total = 0
        self._handlers: dict[str, Callable[[str, Doc, Connection], Doc]] = {
            "hello": self._hello,
            "isMaster": self._hello,
            "ping": lambda *_: {},
            "buildInfo": self._build_info,
            "insert": self._insert,
            "update": self._update,
            "delete": self._delete,
            "find": self._find,
            "getMore": self._get_more,
            "killCursors": self._kill_cursors,
            "count": self._count,
            "distinct": self._distinct,
            "aggregate": self._aggregate,
            "findAndModify": self._find_and_modify,
            "createIndexes": self._create_indexes,
            "listIndexes": self._list_indexes,
            "dropIndexes": self._drop_indexes,
            "deleteIndexes": self._drop_indexes,
            "listCollections": self._list_collections,
            "listDatabases": self._list_databases,
            "create": self._create,
            "drop": self._drop,
            "dropDatabase": self._drop_database,
            "renameCollection": self._rename_collection,
            "collStats": self._coll_stats,
            "dbStats": self._db_stats,
            "serverStatus": self._server_status,
            "endSessions": lambda *_: {},
            "killSessions": lambda *_: {},
            "killAllSessions": lambda *_: {},
            "killAllSessionsByPattern": lambda *_: {},
            "refreshSessions": lambda *_: {},
            "startSession": self._start_session,
            "commitTransaction": self._no_transactions,
            "abortTransaction": self._no_transactions,
            "getParameter": lambda *_: {"featureCompatibilityVersion": {"version": "7.0"}},
            "getCmdLineOpts": lambda *_: {"argv": ["standin"], "parsed": {}},
            "hostInfo": self._host_info,
            "whatsmyuri": lambda _db, _cmd, conn: {"you": conn.peer},
            "connectionStatus": lambda *_: {
                "authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}
            },
            "getLog": lambda *_: {"totalLinesWritten": 0, "log": []},
            "currentOp": lambda *_: {"inprog": []},
            "fsync": lambda *_: {"numFiles": 1},
            "explain": self._explain,
            "shutdown": self._shutdown,
        }

    # ----------------------------------------------------------------------- entry point

    def execute(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        """Run one command; always returns a reply document (``ok: 0`` on failure)."""
        if not cmd:
            return CommandError(FAILED_TO_PARSE, "empty command").to_reply()
        given = next(iter(cmd))
        name = _ALIASES.get(given.lower(), given)
        if name != given:  # canonical spelling first, so handlers can read cmd[name]
            cmd = {name: cmd[given], **{k: v for k, v in cmd.items() if k != given}}
        handler = self._handlers.get(name)
        if handler is None:
            return CommandError(COMMAND_NOT_FOUND, f"no such command: '{name}'").to_reply()
        if cmd.get("startTransaction") or cmd.get("autocommit") is False:
            return CommandError(
                ILLEGAL_OPERATION,
                "Transaction numbers are only allowed on a replica set member or mongos",
            ).to_reply()
        try:
            with self.lock:
                try:
                    reply = handler(db, cmd, conn)
                finally:
                    if name in _WRITE_COMMANDS:
                        self.version += 1  # even a failed write may have changed something
        except CommandError as exc:
            return exc.to_reply()
        except OperationFailure as exc:  # mongomock rejecting a query or stage
            return CommandError(BAD_VALUE, str(exc)).to_reply()
        except NotImplementedError as exc:
            return CommandError(NOT_IMPLEMENTED, f"not supported by the stand-in: {exc}").to_reply()
        except Exception as exc:
            # Answer rather than drop the connection: the driver would retry or hang otherwise.
            traceback.print_exc(file=sys.stderr)
            return CommandError(INTERNAL_ERROR, f"{name} failed: {exc!r}").to_reply()
        reply.setdefault("ok", 1.0)
        return reply

    # ------------------------------------------------------------------------ collections

    def collection(self, db: str, name: Any) -> Collection | None:
        """The named collection, or None if it does not exist."""
        if not isinstance(name, str) or not name or "\x00" in name:
            raise CommandError(INVALID_NAMESPACE, f"Invalid namespace specified '{db}.{name}'")
        database = self.databases.get(db)
        return database.get(name) if database is not None else None

    def ensure_collection(self, db: str, name: Any) -> Collection:
        """The named collection, created (as MongoDB does implicitly on writes) if missing."""
        found = self.collection(db, name)
        if found is None:
            found = Collection(db, name)
            self.databases.setdefault(db, {})[name] = found
        return found

    # ------------------------------------------------------------------------- handshake

    def _hello(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        legacy = next(iter(cmd)).lower() == "ismaster"
        return {
            "helloOk": True,
            ("ismaster" if legacy else "isWritablePrimary"): True,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": _now(),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": conn.id,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
        }

    def _build_info(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        return {
            "version": SERVER_VERSION,
            "gitVersion": "mongo-standin",
            "versionArray": [7, 0, 0, 0],
            "modules": [],
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "storageEngines": ["standin"],
            "javascriptEngine": "none",
        }

    def _host_info(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        return {"system": {"hostname": os.uname().nodename, "numCores": os.cpu_count()}}

    def _server_status(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        return {
            "host": os.uname().nodename,
            "version": SERVER_VERSION,
            "process": "mongod",
            "pid": Int64(os.getpid()),
            "uptime": time.monotonic() - self.started,
            "localTime": _now(),
            "connections": {
                "current": self.connections_current,
                "totalCreated": self.connections_total,
            },
            "metrics": {"cursor": {"open": {"total": len(self.cursors)}}},
        }

    def _start_session(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        session_id = Binary.from_uuid(uuid.uuid4(), UuidRepresentation.STANDARD)
        return {"id": {"id": session_id}, "timeoutMinutes": 30}

    def _no_transactions(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        raise CommandError(
            ILLEGAL_OPERATION,
            "Transaction numbers are only allowed on a replica set member or mongos",
        )

    def _shutdown(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        if self.shutdown_hook is not None:
            threading.Thread(target=self.shutdown_hook, daemon=True).start()
        return {}

    # ---------------------------------------------------------------------------- writes

    def _insert(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self.ensure_collection(db, cmd["insert"])
        ordered = cmd.get("ordered", True)
        inserted = 0
        errors: list[Doc] = []
        for index, doc in enumerate(cmd.get("documents", [])):
            try:
                coll.insert(with_id_first(doc))
                inserted += 1
            except CommandError as exc:
                errors.append(exc.write_error(index))
                if ordered:
                    break
        return _write_reply(inserted, errors)

    def _update(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        name = cmd["update"]
        ordered = cmd.get("ordered", True)
        matched = modified = 0
        upserted: list[Doc] = []
        errors: list[Doc] = []
        for index, statement in enumerate(cmd.get("updates", [])):
            try:
                n, n_modified, upserted_id = self._update_statement(db, name, statement)
            except CommandError as exc:
                errors.append(exc.write_error(index))
                if ordered:
                    break
                continue
            matched += n
            modified += n_modified
            if upserted_id is not None:
                upserted.append({"index": index, "_id": upserted_id})
        reply = _write_reply(matched + len(upserted), errors)
        reply["nModified"] = modified
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _update_statement(self, db: str, name: str, statement: Doc) -> tuple[int, int, Any]:
        query = statement.get("q") or {}
        update = statement.get("u")
        multi = bool(statement.get("multi"))
        if update is None:
            raise CommandError(FAILED_TO_PARSE, "BSON field 'update.updates.u' is missing")
        if multi and not (is_operator_update(update) or isinstance(update, list)):
            raise CommandError(
                FAILED_TO_PARSE, "multi update is not supported for replacement-style update"
            )
        if statement.get("arrayFilters"):
            raise CommandError(BAD_VALUE, "arrayFilters are not supported by the stand-in")
        coll = self.collection(db, name)
        if coll is None:
            if not statement.get("upsert"):
                return 0, 0, None
            coll = self.ensure_collection(db, name)
        targets = coll.find(query, limit=0 if multi else 1)
        modified = 0
        growth = growth_bound(update)
        for doc in targets:
            new = apply_update(doc, update, query, is_insert=False)
            if new != doc:
                coll.replace(doc, new, growth=growth)
                modified += 1
        if targets or not statement.get("upsert"):
            return len(targets), modified, None
        new = _upsert_document(query, update)
        coll.insert(new)
        return 0, 0, new["_id"]

    def _delete(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self.collection(db, cmd["delete"])
        ordered = cmd.get("ordered", True)
        deleted = 0
        errors: list[Doc] = []
        for index, statement in enumerate(cmd.get("deletes", [])):
            try:
                if coll is None:
                    continue
                limit = statement.get("limit", 0)
                for doc in coll.find(statement.get("q") or {}, limit=1 if limit == 1 else 0):
                    coll.delete(doc)
                    deleted += 1
            except CommandError as exc:
                errors.append(exc.write_error(index))
                if ordered:
                    break
        return _write_reply(deleted, errors)

    def _find_and_modify(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        query = cmd.get("query") or {}
        update = cmd.get("update")
        remove = bool(cmd.get("remove"))
        upsert = bool(cmd.get("upsert"))
        if remove and update is not None:
            raise CommandError(FAILED_TO_PARSE, "Cannot specify both an update and remove=true")
        if not remove and update is None:
            raise CommandError(FAILED_TO_PARSE, "Either an update or remove=true must be specified")
        if remove and upsert:
            raise CommandError(FAILED_TO_PARSE, "Cannot specify both upsert=true and remove=true")
        name = cmd["findAndModify"]
        coll = self.ensure_collection(db, name) if upsert else self.collection(db, name)
        if coll is None:
            return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None}
        sort = cmd.get("sort")
        if sort:
            found = sort_documents(coll.find(query), sort, limit=1)
        else:
            found = coll.find(query, limit=1)
        target = found[0] if found else None
        projection = Projection(cmd.get("fields"))
        last_error: Doc = {"n": 0}
        value: Doc | None = None
        if remove:
            if target is not None:
                coll.delete(target)
                last_error, value = {"n": 1}, target
        elif target is not None:
            new = apply_update(target, update, query, is_insert=False)
            if new != target:
                coll.replace(target, new, growth=growth_bound(update))
            last_error = {"n": 1, "updatedExisting": True}
            value = new if cmd.get("new") else target
        elif upsert:
            new = _upsert_document(query, update)
            coll.insert(new)
            last_error = {"n": 1, "updatedExisting": False, "upserted": new["_id"]}
            value = new if cmd.get("new") else None
        else:
            last_error["updatedExisting"] = False
        return {
            "lastErrorObject": last_error,
            "value": projection.apply(value) if value is not None else None,
        }

    # ----------------------------------------------------------------------------- reads

    def _find(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self.collection(db, cmd["find"])
        skip = int(cmd.get("skip") or 0)
        limit = int(cmd.get("limit") or 0)
        single_batch = bool(cmd.get("singleBatch")) or limit < 0
        limit = abs(limit)
        sort = cmd.get("sort")
        if coll is None:
            docs: list[Doc] = []
        elif sort:
            docs = coll.find_ordered(cmd.get("filter"), sort, skip + limit)  # type: ignore[assignment]
            if docs is None:
                docs = sort_documents(
                    coll.find(cmd.get("filter")), sort, skip + limit if limit else 0
                )
        else:
            docs = coll.find(cmd.get("filter"), limit=skip + limit if limit else 0)
        if skip:
            docs = docs[skip:]
        if limit:
            docs = docs[:limit]
        namespace = f"{db}.{cmd['find']}"
        projection = Projection(cmd.get("projection"))
        return self._open_cursor(namespace, docs, projection, cmd.get("batchSize"), single_batch)

    def _open_cursor(
        self,
        namespace: str,
        docs: list[Doc],
        projection: Projection,
        batch_size: Any,
        single_batch: bool = False,
    ) -> Doc:
        size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        if single_batch:
            size = len(docs)
        batch, position = _take_batch(docs, 0, size, projection)
        cursor_id = 0
        if position < len(docs) and not single_batch:
            self._reap_idle_cursors()
            cursor_id = random.getrandbits(62) + 1
            self.cursors[cursor_id] = _Cursor(cursor_id, namespace, docs, position, projection)
        return {"cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": namespace}}

    def _get_more(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        cursor_id = int(cmd["getMore"])
        cursor = self.cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
        batch_size = int(cmd.get("batchSize") or 0)
        batch, cursor.position = _take_batch(
            cursor.docs, cursor.position, batch_size, cursor.projection
        )
        cursor.last_used = time.monotonic()
        if cursor.position >= len(cursor.docs):
            del self.cursors[cursor_id]
            cursor_id = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.namespace}}

    def _kill_cursors(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        killed, not_found = [], []
        for cursor_id in cmd.get("cursors", []):
            if self.cursors.pop(int(cursor_id), None) is not None:
                killed.append(Int64(cursor_id))
            else:
                not_found.append(Int64(cursor_id))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
        }

    def _reap_idle_cursors(self) -> None:
        deadline = time.monotonic() - _CURSOR_IDLE_SECONDS
        for cursor_id in [c.id for c in self.cursors.values() if c.last_used < deadline]:
            del self.cursors[cursor_id]

    def _count(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self.collection(db, cmd["count"])
        query = cmd.get("query")
        skip = int(cmd.get("skip") or 0)
        limit = abs(int(cmd.get("limit") or 0))
        if coll is None:
            total = 0
        elif not query:
            total = len(coll.docs)
        else:
            counted = coll.count_range(query)
            total = (
                counted
                if counted is not None
                else len(coll.find(query, limit=skip + limit if limit else 0))
            )
        total = max(total - skip, 0)
        return {"n": min(total, limit) if limit else total}

    def _distinct(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self.collection(db, cmd["distinct"])
        key = cmd.get("key")
        if not isinstance(key, str):
            raise CommandError(FAILED_TO_PARSE, "'key' must be a string")
        parts = tuple(key.split("."))
        values: list[Any] = []
        for doc in coll.find(cmd.get("query")) if coll is not None else []:
            for value in path_values(doc, parts):
                values.extend(value if isinstance(value, list) else [value])
        return {"values": list(iter_unique(values))}

    def _aggregate(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        pipeline = cmd.get("pipeline")
        if not isinstance(pipeline, list):
            raise CommandError(FAILED_TO_PARSE, "'pipeline' option must be specified as an array")
        if "cursor" not in cmd and not cmd.get("explain"):
            raise CommandError(
                FAILED_TO_PARSE,
                "The 'cursor' option is required, except for aggregate with the explain argument",
            )
        target = cmd["aggregate"]
        coll = None if target == 1 else self.collection(db, target)
        docs = aggregation.run_pipeline(coll, pipeline, self.databases.get(db, {}))
        namespace = f"{db}.{target if target != 1 else '$cmd.aggregate'}"
        batch_size = (cmd.get("cursor") or {}).get("batchSize")
        return self._open_cursor(namespace, docs, Projection(None), batch_size)

    def _explain(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        inner = cmd.get("explain") or {}
        name = next(iter(inner), "")
        return {
            "queryPlanner": {
                "namespace": f"{db}.{inner.get(name, '')}",
                "winningPlan": {"stage": "STANDIN"},
                "rejectedPlans": [],
            },
            "command": inner,
        }

    # ----------------------------------------------------------------------------- admin

    def _create_indexes(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        name = cmd["createIndexes"]
        existed = self.collection(db, name) is not None
        coll = self.ensure_collection(db, name)
        before = len(coll.indexes) + 1
        for raw in cmd.get("indexes", []):
            key = raw.get("key")
            if not isinstance(key, dict) or not key:
                raise CommandError(BAD_VALUE, "index key pattern must be a non-empty object")
            raw = {**raw, "name": raw.get("name") or default_index_name(key)}
            spec = normalize_spec(raw)
            if _same_key(key, ID_INDEX_SPEC["key"]):
                continue  # the _id index always exists
            existing = coll.indexes.get(spec["name"])
            if existing is not None:
                if not _same_key(existing.key, key):
                    raise CommandError(
                        INDEX_KEY_SPECS_CONFLICT,
                        "An existing index has the same name as the requested index but a"
                        f" different key: {spec['name']}",
                    )
                if _options(existing.spec) != _options(spec):
                    raise CommandError(
                        INDEX_OPTIONS_CONFLICT,
                        "An existing index has the same name but different options:"
                        f" {spec['name']}",
                    )
                continue
            for other in coll.indexes.values():
                if _same_key(other.key, key) and _options(other.spec) == _options(spec):
                    raise CommandError(
                        INDEX_OPTIONS_CONFLICT,
                        f"Index already exists with a different name: {other.name}",
                    )
            coll.add_index(Index(spec))
        reply: Doc = {
            "numIndexesBefore": before,
            "numIndexesAfter": len(coll.indexes) + 1,
            "createdCollectionAutomatically": not existed,
        }
        if reply["numIndexesAfter"] == before:
            reply["note"] = "all indexes already exist"
        return reply

    def _list_indexes(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self._existing(db, cmd["listIndexes"])
        batch_size = (cmd.get("cursor") or {}).get("batchSize")
        namespace = f"{db}.{cmd['listIndexes']}"
        return self._open_cursor(namespace, coll.index_specs(), Projection(None), batch_size)

    def _drop_indexes(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self._existing(db, next(iter(cmd.values())))
        before = len(coll.indexes) + 1
        target = cmd.get("index")
        if target == "*":
            names = list(coll.indexes)
        elif isinstance(target, dict):
            if _same_key(target, ID_INDEX_SPEC["key"]):
                raise CommandError(INVALID_OPTIONS, "cannot drop _id index")
            names = [i.name for i in coll.indexes.values() if _same_key(i.key, target)]
            if not names:
                raise CommandError(INDEX_NOT_FOUND, f"can't find index with key: {target}")
        else:
            names = target if isinstance(target, list) else [target]
            for index_name in names:
                if index_name == "_id_":
                    raise CommandError(INVALID_OPTIONS, "cannot drop _id index")
                if index_name not in coll.indexes:
                    raise CommandError(INDEX_NOT_FOUND, f"index not found with name [{index_name}]")
        for index_name in names:
            del coll.indexes[index_name]
        return {"nIndexesWas": before}

    def _existing(self, db: str, name: Any) -> Collection:
        coll = self.collection(db, name)
        if coll is None:
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {db}.{name}")
        return coll

    def _list_collections(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        infos = []
        for name in sorted(self.databases.get(db, {})):
            info: Doc = {"name": name, "type": "collection"}
            if not cmd.get("nameOnly"):
                info.update(
                    options={},
                    info={"readOnly": False},
                    idIndex=dict(ID_INDEX_SPEC),
                )
            infos.append(info)
        query = cmd.get("filter")
        if query:
            infos = [info for info in infos if matches(query, info)]
        batch_size = (cmd.get("cursor") or {}).get("batchSize")
        return self._open_cursor(f"{db}.$cmd.listCollections", infos, Projection(None), batch_size)

    def _list_databases(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        databases = [
            {"name": name, "sizeOnDisk": 0, "empty": False}
            for name, collections in sorted(self.databases.items())
            if collections
        ]
        if cmd.get("filter"):
            databases = [d for d in databases if matches(cmd["filter"], d)]
        if cmd.get("nameOnly"):
            databases = [{"name": d["name"]} for d in databases]
        return {"databases": databases, "totalSize": 0, "totalSizeMb": 0}

    def _create(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        if self.collection(db, cmd["create"]) is not None:
            raise CommandError(NAMESPACE_EXISTS, f"Collection {db}.{cmd['create']} already exists.")
        self.ensure_collection(db, cmd["create"])
        return {}

    def _drop(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self.collection(db, cmd["drop"])
        if coll is None:
            return {}  # MongoDB 7.0 treats dropping a missing collection as success
        del self.databases[db][coll.name]
        if not self.databases[db]:
            del self.databases[db]
        return {"nIndexesWas": len(coll.indexes) + 1, "ns": coll.namespace}

    def _drop_database(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        self.databases.pop(db, None)
        return {"dropped": db}

    def _rename_collection(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        source, target = cmd["renameCollection"], cmd.get("to")
        if not isinstance(source, str) or not isinstance(target, str) or "." not in target:
            raise CommandError(INVALID_NAMESPACE, "renameCollection needs two full namespaces")
        source_db, _, source_name = source.partition(".")
        target_db, _, target_name = target.partition(".")
        coll = self._existing(source_db, source_name)
        if self.collection(target_db, target_name) is not None:
            if not cmd.get("dropTarget"):
                raise CommandError(NAMESPACE_EXISTS, "target namespace exists")
            del self.databases[target_db][target_name]
        del self.databases[source_db][source_name]
        coll.db_name, coll.name = target_db, target_name
        self.databases.setdefault(target_db, {})[target_name] = coll
        return {}

    def _coll_stats(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        coll = self._existing(db, cmd["collStats"])
        return {
            "ns": coll.namespace,
            "count": len(coll.docs),
            "size": 0,
            "storageSize": 0,
            "nindexes": len(coll.indexes) + 1,
            "indexNames": [spec["name"] for spec in coll.index_specs()],
        }

    def _db_stats(self, db: str, cmd: Doc, conn: Connection) -> Doc:
        collections = self.databases.get(db, {})
        return {
            "db": db,
            "collections": len(collections),
            "objects": sum(len(c.docs) for c in collections.values()),
            "indexes": sum(len(c.indexes) + 1 for c in collections.values()),
            "dataSize": 0,
            "storageSize": 0,
        }

    # -------------------------------------------------------------------------- snapshots

    def export(self) -> list[tuple[str, str, list[Doc], list[Doc]]]:
        """(db, collection, secondary index specs, documents) for every collection.

        Called under the lock; cheap (list copies of references): documents are immutable.
        """
        return [
            (db, name, [index.spec for index in coll.indexes.values()], list(coll.docs.values()))
            for db, collections in self.databases.items()
            for name, coll in collections.items()
        ]

    def load(self, db: str, name: str, index_specs: list[Doc], docs: list[Doc]) -> None:
        coll = self.ensure_collection(db, name)
        for doc in docs:
            coll.insert(doc)
        for spec in index_specs:
            coll.add_index(Index(spec))


# ---------------------------------------------------------------------------------- helpers


def _now() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _write_reply(n: int, errors: list[Doc]) -> Doc:
    reply: Doc = {"n": n}
    if errors:
        reply["writeErrors"] = errors
    return reply


def _upsert_document(query: Doc, update: Any) -> Doc:
    if is_operator_update(update) or isinstance(update, list):
        new = apply_update(upsert_seed(query), update, query, is_insert=True)
    else:
        seed = upsert_seed(query)
        new = dict(update)
        if "_id" not in new and "_id" in seed:
            new["_id"] = seed["_id"]
    return with_id_first(new)


def _take_batch(
    docs: list[Doc], start: int, size: int, projection: Projection
) -> tuple[list[RawBSONDocument], int]:
    """Encode up to ``size`` documents (0: no count limit) from ``start``, within 16 MB.

    Documents are encoded one by one so the batch can stop at mongod's 16 MB reply size;
    RawBSONDocument lets the final reply embed the bytes without re-encoding them.
    """
    end = len(docs) if size <= 0 else min(len(docs), start + size)
    batch: list[RawBSONDocument] = []
    total = 0
    position = start
    while position < end:
        raw = bson.encode(projection.apply(docs[position]))
        if batch and total + len(raw) > _MAX_BATCH_BYTES:
            break
        batch.append(RawBSONDocument(raw))
        total += len(raw)
        position += 1
    return batch, position


def _same_key(left: dict[str, Any], right: dict[str, Any]) -> bool:
    # Key order matters for compound indexes, and 1 / 1.0 are the same direction.
    return list(left) == list(right) and all(left[k] == right[k] for k in left)


def _options(spec: Doc) -> Doc:
    return {k: v for k, v in spec.items() if k not in ("v", "key", "name", "background")}
