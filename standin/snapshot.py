"""Persistence for ``--data-file``: whole-state BSON snapshots, written atomically.

File format: a stream of BSON documents — a header ``{format, version}``, then for each
collection a descriptor ``{db, collection, indexes: [listIndexes specs], count: N}`` followed
by its N documents.  A snapshot is written to a temporary file in the same directory, fsynced
and moved over the data file with ``os.replace``, so the file is always a complete snapshot.

Durability: state is saved every ``interval`` seconds when something changed, and on clean
shutdown (SIGTERM/SIGINT/``shutdown`` command).  A SIGKILL or crash loses the writes made since
the last periodic snapshot — at most ``interval`` seconds of work.

One server per data file: ``lock_data_file`` takes an exclusive ``flock`` on ``<file>.lock``
for the life of the process, so a second stand-in on the same file refuses to start instead
of overwriting the first one's snapshots (and the writes it confirmed) with its own.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import bson

from .engine import Engine
from .server import CODEC_OPTIONS

FORMAT = "mongo-standin-snapshot"
VERSION = 1

CollectionDump = tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]


class DataFileLocked(RuntimeError):
    """Another process holds the data file's lock."""


def lock_data_file(path: str) -> int:
    """Lock `path` for this process, or raise DataFileLocked naming the holder.

    The lock is on a sidecar ``<path>.lock``: snapshots replace the data file itself, so a
    lock on it would not outlive the first snapshot. Returns the lock file's descriptor; the
    lock lasts while it stays open (the kernel drops it when the process exits, however).
    """
    lock_path = f"{path}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataFileLocked(
            f"{path} is in use by another stand-in (pid {holder}); two servers on one data "
            "file would overwrite each other's writes. Stop that one first, or give this one "
            "another --data-file."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def write_snapshot(path: str, collections: list[CollectionDump]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(temporary, "wb") as out:
        out.write(bson.encode({"format": FORMAT, "version": VERSION}))
        for db, name, index_specs, docs in collections:
            descriptor = {"db": db, "collection": name, "indexes": index_specs, "count": len(docs)}
            out.write(bson.encode(descriptor))
            for doc in docs:
                out.write(bson.encode(doc))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    # Make the rename itself durable.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(path: str) -> Iterator[CollectionDump]:
    with open(path, "rb") as source:
        stream = bson.decode_file_iter(source, CODEC_OPTIONS)
        header = next(stream, None)
        if not header or header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"{path} is not a mongo stand-in snapshot (version {VERSION})")
        for descriptor in stream:
            docs = [next(stream) for _ in range(descriptor["count"])]
            yield descriptor["db"], descriptor["collection"], descriptor["indexes"], docs


def load_snapshot(engine: Engine, path: str) -> int:
    """Load ``path`` into ``engine`` if it exists; returns the number of documents."""
    if not os.path.exists(path):
        return 0
    total = 0
    for db, name, index_specs, docs in read_snapshot(path):
        engine.load(db, name, index_specs, docs)
        total += len(docs)
    return total


class Snapshotter:
    """Saves the engine's state to ``path`` periodically (when it changed) and on demand."""

    def __init__(self, engine: Engine, path: str, interval: float) -> None:
        self.engine = engine
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.interval = interval
        self._saved_version = engine.version
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshotter", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def save(self, force: bool = False) -> bool:
        with self._write_lock:
            # Only the reference copy happens under the engine lock; documents are immutable,
            # so encoding and writing proceed while clients keep working.
            with self.engine.lock:
                version = self.engine.version
                if version == self._saved_version and not force:
                    return False
                dump = self.engine.export()
            write_snapshot(self.path, dump)
            self._saved_version = version
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except OSError as exc:  # keep serving; report and retry next round
                print(f"standin: snapshot to {self.path} failed: {exc}", file=sys.stderr)
