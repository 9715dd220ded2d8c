"""Process plumbing: CPU pinning, /proc accounting, and the uvicorn servers under test."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from devstack import stack

ROOT = stack.ROOT
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


def all_cpus() -> list[str]:
    """`taskset -c <every core>`: undoes the affinity a child inherits from the runner."""
    return ["taskset", "-c", ",".join(map(str, _CPUS))] if shutil.which("taskset") else []


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


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of `pid` and every live descendant (a multi-worker uvicorn)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
        frontier += parents.get(current, [])
    return total


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


def uvicorn_options(workers: int = 1) -> list[str]:
    """One worker, quiet; `asgi_app.serve` already runs uvloop, httptools (guarded), no
    access log and the lifespan."""
    return ["--workers", str(workers), "--log-level", "warning"]


def uvicorn_command(app: str, port: int, wrapper: list[str] | None = None) -> list[str]:
    return stack.uvicorn_command(app, port=port, options=uvicorn_options(), wrapper=wrapper or [])


class Server(stack.UvicornProcess):
    """One uvicorn process under test, pinned to the server core, its output in `log_path`.

    With `workers` > 1 it runs on every core (sharing them with the generator and the
    stand-in) and its CPU is that of the whole process tree.
    """

    def __init__(
        self, name: str, app: str, env: dict[str, str], log_path: Path, workers: int = 1
    ) -> None:
        super().__init__(
            app,
            env,
            options=uvicorn_options(workers),
            log_path=log_path,
            prefix=pinned([], server_cpu()) if workers == 1 else all_cpus(),
        )
        self.name = name
        self.workers = workers


class ReferenceServer(Server):
    """bench/reference (FastAPI) under plain uvicorn, as its author would run it: uvloop,
    httptools, no access log, the same worker count and pinning as the API it is paired with."""

    def command(self) -> list[str]:
        return [*self.prefix, *reference_command(self.app, self.host, self.port, self.options)]


def reference_command(app: str, host: str, port: int, options: list[str]) -> list[str]:
    """Plain uvicorn with uvloop and httptools, no access log (loadtest/run.py uses it too)."""
    uvicorn = [sys.executable, "-m", "uvicorn", app, "--host", host, "--port", str(port)]
    return [*uvicorn, "--loop", "uvloop", "--http", "httptools", "--no-access-log", *options]


class BaselineServer(Server):
    """The API as of another checkout (`BENCH_BASELINE`, a git worktree in `source`), in
    the reference's place: the paired rounds then measure one change, new against old."""

    def __init__(self, name: str, source: Path, env: dict[str, str], log_path: Path) -> None:
        super().__init__(name, "asgi_app.asgi:application", env, log_path)
        self.source = source

    def command(self) -> list[str]:
        run = (
            f"import runpy, sys; sys.path.insert(0, {str(self.source)!r}); "
            "runpy.run_module('asgi_app.serve', run_name='__main__')"
        )
        serve = [sys.executable, "-c", run, self.app, "--host", self.host]
        return [*self.prefix, *serve, "--port", str(self.port), *self.options]
