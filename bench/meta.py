"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import procs
from bench.rungs import Settings
from bench.stack import Stack

PACKAGES = ("django", "djangorestframework", "adrf", "uvicorn", "uvloop", "httptools")
PACKAGES += ("pymongo", "motor", "djangorestframework-simplejwt", "orjson")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=procs.ROOT, capture_output=True, text=True)
    return result.stdout.strip()


def _git_commit() -> str:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = len(_git("status", "--porcelain", "--untracked-files=no").splitlines())
    return f"{commit} + {changed} uncommitted file(s)" if changed else commit


def loadavg() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews throughput."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def collect(stack: Stack, settings: Settings) -> dict[str, Any]:
    server_cpu, client_cpu = procs.server_cpu(), procs.client_cpu()
    return {
        "cpu_model": _cpu_model(),
        "cores": procs.cpu_count(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "git_commit": _git_commit(),
        "mongo": stack.mongo_kind,
        "pinning": (
            f"server and DB-ceiling driver on CPU {server_cpu}; generator, py-spy and the "
            f"MongoDB stand-in on CPU {client_cpu}"
            if server_cpu is not None
            else "none (taskset missing or a single core)"
        ),
        "uvicorn": " ".join(procs.uvicorn_command("<app>", 0)[1:]).replace(" --port 0", ""),
        "concurrency": settings.concurrency,
        "loadavg_end": loadavg(),
        "baseline": os.environ.get("BENCH_BASELINE"),
    }
