"""One stand-in per data file: a second one on the same file refuses at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pymongo import MongoClient

from standin.process import StandinProcess


def _second_standin(data_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter and module
        [sys.executable, "-m", "standin", "--port", "0", "--data-file", str(data_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_standin_on_the_same_data_file_exits_with_a_clear_message(tmp_path):
    # given a stand-in serving from a data file, with a confirmed write
    data_file = tmp_path / "data.bson"
    with StandinProcess(data_file=str(data_file)) as first:
        with MongoClient(first.uri) as client:
            client.app.enrollments.insert_one({"user_id": 1})

        # when a second stand-in is started on the same file
        second = _second_standin(data_file)

        # then it refuses at once, names the holder, and never listened
        assert second.returncode == 3
        assert f"is in use by another stand-in (pid {first.pid})" in second.stderr
        assert "listening" not in second.stdout
        # and the first keeps serving its data
        with MongoClient(first.uri) as client:
            assert client.app.enrollments.count_documents({}) == 1

    # and once the first has stopped, the file is free again and holds the write
    with StandinProcess(data_file=str(data_file)) as third:
        with MongoClient(third.uri) as client:
            assert client.app.enrollments.count_documents({"user_id": 1}) == 1


def test_a_standin_on_another_data_file_is_not_blocked(tmp_path):
    with StandinProcess(data_file=str(tmp_path / "a.bson")) as first:
        with StandinProcess(data_file=str(tmp_path / "b.bson")) as second:
            assert first.running
            assert second.running
