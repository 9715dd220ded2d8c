"""The one MongoDB client of the process, and the translation of driver errors.

Only this package creates clients. The client is created lazily on the running event
loop (the async drivers bind to the loop they first run on) and closed at shutdown by
the ASGI lifespan handler. `MONGO_DRIVER` selects PyMongo's native async client
(default) or Motor, its predecessor with the same API.
"""

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from pymongo.monitoring import (
    CommandListener,
    ConnectionClosedEvent,
    ConnectionClosedReason,
    ConnectionPoolListener,
    PoolClearedEvent,
    ServerClosedEvent,
    ServerDescriptionChangedEvent,
    ServerListener,
    ServerOpeningEvent,
)
from pymongo.server_type import SERVER_TYPE

from common.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

_client: Any = None
_client_loop: asyncio.AbstractEventLoop | None = None
_databases: dict[str, Any] = {}
_collections: dict[tuple[str, str], Any] = {}
_listeners: list[CommandListener] = []
_server_change_callbacks: list[Callable[[], None]] = []


def on_server_change(callback: Callable[[], None]) -> None:
    """Call `callback` whenever the server behind the client may have changed.

    Process-level memories of what the database holds (its indexes exist, a course
    exists) are only true of the server they were learnt from. A MongoDB restarted without
    its data, or a failover to a member that lacks them, makes them false. The driver's
    monitoring sees every such event: the server description changes (it went Unknown on
    a failed heartbeat or a network error, came back, changed its role), or the pool finds
    a pooled connection closed by the server (how a restart between two heartbeats shows
    when the next request checks out an idle connection; the pool then silently opens a
    new one to the new server). Callbacks run on the driver's monitoring path: they must
    be quick and must not raise.
    """
    if callback not in _server_change_callbacks:
        _server_change_callbacks.append(callback)


def server_changed() -> None:
    for callback in _server_change_callbacks:
        try:
            callback()
        except Exception:  # a cache that cannot forget must not break the driver's monitor
            logger.exception("server change callback %r failed", callback)


class _ServerChangeListener(ServerListener, ConnectionPoolListener):
    """Forwards the driver's topology and pool monitoring to `on_server_change`."""

    def opened(self, event: ServerOpeningEvent) -> None:
        pass  # a new client: `get_client` already announced it

    def description_changed(self, event: ServerDescriptionChangedEvent) -> None:
        # Round-trip times do not make descriptions differ: this fires when the server
        # went Unknown, came back, or changed its role. Discovery (Unknown to known) is
        # not a change by itself: whatever was known was forgotten when it went Unknown,
        # and nothing can be learnt from a server while it is Unknown.
        previous = event.previous_description.server_type
        if previous != SERVER_TYPE.Unknown or event.new_description.server_type == previous:
            server_changed()

    def closed(self, event: ServerClosedEvent) -> None:
        server_changed()

    def pool_cleared(self, event: PoolClearedEvent) -> None:
        server_changed()

    def connection_closed(self, event: ConnectionClosedEvent) -> None:
        # "error": the server closed it (or it broke); "idle"/"stale"/"poolClosed" are ours.
        if event.reason == ConnectionClosedReason.ERROR:
            server_changed()

    # The pool's other events say nothing about the server's identity.
    def pool_created(self, event: Any) -> None:
        pass

    def pool_ready(self, event: Any) -> None:
        pass

    def pool_closed(self, event: Any) -> None:
        pass

    def connection_created(self, event: Any) -> None:
        pass

    def connection_ready(self, event: Any) -> None:
        pass

    def connection_check_out_started(self, event: Any) -> None:
        pass

    def connection_check_out_failed(self, event: Any) -> None:
        pass

    def connection_checked_out(self, event: Any) -> None:
        pass

    def connection_checked_in(self, event: Any) -> None:
        pass


_server_change_listener = _ServerChangeListener()


def _write_concern() -> WriteConcern:
    raw = str(settings.MONGODB_WRITE_CONCERN)
    w: int | str = int(raw) if raw.isdigit() else raw
    # Acknowledged by a majority of the replica set and journaled: an acknowledged
    # enrollment survives a primary failover or crash. (A standalone server treats
    # majority as itself.)
    return WriteConcern(w=w, j=settings.MONGODB_JOURNAL)


def _client_options() -> dict[str, Any]:
    return {
        "maxPoolSize": settings.MONGODB_MAX_POOL_SIZE,
        "serverSelectionTimeoutMS": settings.MONGODB_SERVER_SELECTION_TIMEOUT_MS,
        "connectTimeoutMS": settings.MONGODB_CONNECT_TIMEOUT_MS,
        "socketTimeoutMS": settings.MONGODB_SOCKET_TIMEOUT_MS,
        "tz_aware": True,
        "appname": "enrollment-service",
        "event_listeners": [*_listeners, _server_change_listener],
    }


def _create_client() -> Any:
    options = _client_options()
    if settings.MONGO_DRIVER == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        return AsyncIOMotorClient(settings.MONGODB_URI, **options)
    return AsyncMongoClient(settings.MONGODB_URI, **options)


def get_client() -> Any:
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop:
        # A client never outlives its loop (management commands and tests run new loops).
        _client = _create_client()
        _client_loop = loop
        server_changed()  # a new client: what an earlier one learnt is not vouched for
        _databases.clear()
        _collections.clear()
    return _client


def get_db() -> Any:
    client = get_client()
    name = settings.MONGODB_DB
    db = _databases.get(name)
    if db is None:
        db = _databases[name] = client.get_database(name, write_concern=_write_concern())
    return db


def get_collection(name: str) -> Any:
    """A collection of the current database; cached, since the driver builds a new
    Collection object (about 15 µs) on every `db[name]`."""
    db = get_db()
    key = (db.name, name)
    collection = _collections.get(key)
    if collection is None:
        collection = _collections[key] = db[name]
    return collection


async def cursor(result: Any) -> Any:
    """The cursor of `aggregate()`/`list_indexes()`: PyMongo's async API returns it from a
    coroutine, Motor directly."""
    return await result if inspect.isawaitable(result) else result


async def close_client() -> None:
    global _client, _client_loop
    client, _client, _client_loop = _client, None, None
    _databases.clear()
    _collections.clear()
    if client is not None:
        result = client.close()
        if asyncio.iscoroutine(result):  # PyMongo's close is a coroutine, Motor's is not.
            await result


async def reset_client(listeners: Sequence[CommandListener] = ()) -> None:
    """Close the client so the next call creates one with these command listeners."""
    _listeners[:] = listeners
    await close_client()


@contextmanager
def unavailable_on_driver_error(what: str = "MongoDB") -> Iterator[None]:
    """Turn connection-level driver failures into a 503 domain error."""
    try:
        yield
    except (ServerSelectionTimeoutError, ConnectionFailure, NetworkTimeout) as exc:
        logger.warning("mongodb unavailable: %s", type(exc).__name__)
        raise ServiceUnavailable(f"{what} is unavailable, try again shortly.") from exc
    except (ExecutionTimeout, WTimeoutError) as exc:
        logger.warning("mongodb timeout: %s", type(exc).__name__)
        raise ServiceUnavailable(f"{what} timed out, try again shortly.") from exc
    except (DuplicateKeyError, BulkWriteError):
        raise  # outcomes the repositories interpret
    except PyMongoError as exc:
        logger.error("mongodb command failed: %s", exc)
        raise ServiceUnavailable(f"{what} could not complete the request.") from exc


async def ping() -> bool:
    try:
        with unavailable_on_driver_error():
            await get_db().command("ping")
    except PyMongoError as exc:
        raise ServiceUnavailable("MongoDB is unavailable.") from exc
    return True
