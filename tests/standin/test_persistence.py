"""--data-file: state survives a clean restart, and a crash loses only unsnapshotted writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from standin.process import StandinProcess


def test_data_and_unique_indexes_survive_a_sigterm_restart(tmp_path: Path) -> None:
    data_file = str(tmp_path / "standin.bson")
    first = StandinProcess(data_file=data_file, snapshot_interval=0).start()
    try:
        with MongoClient(first.uri, tz_aware=True) as client:
            client.app.users.create_index("email", unique=True, name="email_unique")
            client.app.users.insert_many([{"email": f"{i}@x.io", "n": i} for i in range(500)])
            client.other.things.insert_one({"kept": True})
    finally:
        assert first.stop() == 0
    assert os.path.getsize(data_file) > 0

    second = StandinProcess(port=first.port, data_file=data_file).start()
    try:
        with MongoClient(second.uri, tz_aware=True) as client:
            assert client.app.users.count_documents({}) == 500
            assert client.app.users.find_one({"email": "7@x.io"})["n"] == 7
            assert client.other.things.find_one({}, {"_id": 0}) == {"kept": True}
            assert "email_unique" in client.app.users.index_information()
            with pytest.raises(DuplicateKeyError):
                client.app.users.insert_one({"email": "7@x.io"})
    finally:
        second.stop()


def test_sigkill_keeps_the_last_periodic_snapshot(tmp_path: Path) -> None:
    data_file = tmp_path / "standin.bson"
    process = StandinProcess(data_file=str(data_file), snapshot_interval=0.1).start()
    try:
        with MongoClient(process.uri) as client:
            client.app.items.insert_many([{"i": i} for i in range(100)])
            deadline = time.monotonic() + 5
            while not data_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # let a snapshot that includes every insert land
    finally:
        process.kill()
    restarted = StandinProcess(data_file=str(data_file)).start()
    try:
        with MongoClient(restarted.uri) as client:
            assert client.app.items.count_documents({}) == 100
    finally:
        restarted.stop()
