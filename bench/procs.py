"""Process plumbing: CPU pinning, /proc accounting, and the uvicorn servers under test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
# Read at import, before the runner pins itself to the generator's core.
_CPUS = sorted(os.sched_getaffinity(0))


# CPU pinning


def cpu_count() -> int:
    return len(_CPUS)


def server_cpu() -> int | None:
    """The core for the process under test; None when there is only one core."""
    return _CPUS[0] if len(_CPUS) >= 2 and shutil.which("taskset") else None


def client_cpu() -> int | None:
    """The core for the load generator (and the stand-in, py-spy)."""
    return _CPUS[1] if server_cpu() is not None else None


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """`command` under `taskset -c cpu`, or unchanged when pinning is unavailable."""
    return ["taskset", "-c", str(cpu), *command] if cpu is not None else command


def pin_self(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def pin_pid(pid: int, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


# /proc accounting


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (clear_refs 5), so each window gets its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # not permitted: the peak then covers the process's life so far


# Servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def uvicorn_command(app: str, port: int, wrapper: list[str] | None = None) -> list[str]:
    """uvicorn with one worker, no access log, uvloop and httptools when installed."""
    command = [sys.executable, *(wrapper or []), "-m", "uvicorn", app]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    command += ["--lifespan", "auto"]
    if _has("uvloop"):
        command += ["--loop", "uvloop"]
    if _has("httptools"):
        command += ["--http", "httptools"]
    return command


@dataclass
class Server:
    """One uvicorn process under test, pinned to the server core."""

    name: str
    app: str
    env: dict[str, str]
    log_path: Path
    port: int = 0
    wrapper: list[str] | None = None  # interpreter options before `-m uvicorn`
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready_path: str = "/healthz", timeout: float = 30.0) -> Server:
        self.port = free_port()
        self._log = self.log_path.open("ab")
        command = pinned(uvicorn_command(self.app, self.port, self.wrapper), server_cpu())
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        _wait_http(f"http://127.0.0.1:{self.port}{ready_path}", self.process, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {timeout}s")
