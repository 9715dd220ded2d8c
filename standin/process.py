"""Run the stand-in as a subprocess: used by the test harness, ``make run`` and benchmarks.

    with StandinProcess() as standin:          # free port, in-memory
        client = MongoClient(standin.uri)

``start()`` returns once the server answers ``ping``; its output goes to ``log_path``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(rb"standin listening on \S+:(\d+)")


class StandinError(RuntimeError):
    """The stand-in process failed to start."""


class StandinProcess:
    def __init__(
        self,
        port: int | None = None,
        data_file: str | None = None,
        host: str = "127.0.0.1",
        snapshot_interval: float | None = None,
        start_timeout: float = 15.0,
        keep_log: bool = False,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.data_file = data_file
        self.snapshot_interval = snapshot_interval
        self.start_timeout = start_timeout
        self.keep_log = keep_log  # else the output file is deleted once the process is gone
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. PR_SET_PDEATHSIG)
        self.log_path: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> StandinProcess:
        if self._process is not None and self._process.poll() is None:
            raise StandinError("already running")
        command = [sys.executable, "-m", "standin", "--host", self.host]
        # Port 0 lets the server pick a free port itself (no bind race); we read it back.
        command += ["--port", str(self.port if self.port is not None else 0)]
        if self.data_file:
            command += ["--data-file", self.data_file]
        if self.snapshot_interval is not None:
            command += ["--snapshot-interval", str(self.snapshot_interval)]
        log_fd, self.log_path = tempfile.mkstemp(prefix="mongo-standin-", suffix=".log")
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        # A file, not a pipe: nobody drains a pipe, and a full pipe would block the server.
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            cwd=_PROJECT_ROOT,
            env=env,
            preexec_fn=self.preexec_fn,
        )
        os.close(log_fd)
        try:
            self.port = self._wait_for_port()
            self._wait_for_ping()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (clean shutdown, final snapshot); SIGKILL if it does not exit in time."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._discard_log()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: simulates a crash (no final snapshot)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._discard_log()

    def __enter__(self) -> StandinProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- facts

    @property
    def uri(self) -> str:
        if self.port is None:
            raise StandinError("not started")
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        return Path(self.log_path).read_text(errors="replace")

    # -------------------------------------------------------------------------- helpers

    def _discard_log(self) -> None:
        if not self.keep_log and self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)

    def _deadline_left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StandinError(
                f"stand-in did not become ready within {self.start_timeout}s; "
                f"output:\n{self.output()}"
            )
        return left

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + self.start_timeout
        if self._process is None or self.log_path is None:
            raise StandinError("not started")
        while True:
            match = _LISTENING.search(Path(self.log_path).read_bytes())
            if match:
                return int(match.group(1))
            if self._process.poll() is not None:
                raise StandinError(
                    f"stand-in exited with status {self._process.returncode}; "
                    f"output:\n{self.output()}"
                )
            self._deadline_left(deadline)
            time.sleep(0.02)

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            left = self._deadline_left(deadline)
            timeout_ms = int(min(left, 2.0) * 1000)
            client: MongoClient = MongoClient(
                self.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
            )
            try:
                client.admin.command("ping")
                return
            except PyMongoError:
                if self._process is not None and self._process.poll() is not None:
                    raise StandinError(
                        f"stand-in exited with status {self._process.returncode}; "
                        f"output:\n{self.output()}"
                    ) from None
            finally:
                client.close()


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{_PROJECT_ROOT}{os.pathsep}{existing}" if existing else str(_PROJECT_ROOT)
