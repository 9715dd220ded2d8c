"""Sampling profiles of the API server during a rung: py-spy, or pyinstrument as a fallback.

py-spy attaches to the running server (`--pid`), so the profiled process is the very one
measured. It records twice per rung: a flame graph (`<ts>-<rung>.svg`) for people and
collapsed stacks (`<ts>-<rung>.txt`, `--format raw`) from which the hottest frames are
tallied by own time (the frame is on top of the stack) and cumulative time (the frame is
anywhere in the stack). When py-spy cannot attach (no ptrace permission), a second API
server is started under `pyinstrument` for the rung and its text report is saved instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

Load = Callable[[int, float], Awaitable[object]]  # the rung's load on this port, for seconds


@dataclass
class Frame:
    name: str
    own: float  # share of samples with this frame on top
    cumulative: float  # share of samples with this frame anywhere


@dataclass
class Profile:
    rung: str
    tool: str
    samples: int
    files: list[str]
    top_own: list[Frame] = field(default_factory=list)
    top_cumulative: list[Frame] = field(default_factory=list)
    own_by_package: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def py_spy() -> str | None:
    return shutil.which("py-spy") or _venv_tool("py-spy")


def _venv_tool(name: str) -> str | None:
    candidate = procs.ROOT / ".venv" / "bin" / name
    return str(candidate) if candidate.exists() else None


async def record(
    *, rung: str, server: procs.Server, out_dir: Path, stem: str, seconds: float, load: Load
) -> Profile:
    tool = py_spy()
    if tool is None:
        return Profile(rung, "py-spy", 0, [], error="py-spy is not installed")
    svg, raw = out_dir / f"{stem}-{rung}.svg", out_dir / f"{stem}-{rung}.txt"
    for fmt, path in (("raw", raw), ("flamegraph", svg)):
        error = await _py_spy(tool, server, fmt, path, seconds, load)
        if error:
            return Profile(rung, "py-spy", 0, [], error=error)
    profile = tally(rung, await asyncio.to_thread(raw.read_text))
    profile.files = [svg.name, raw.name]
    return profile


async def _py_spy(
    tool: str, server: procs.Server, fmt: str, path: Path, seconds: float, load: Load
) -> str:
    command = [tool, "record", "--pid", str(server.pid), "--duration", str(int(seconds))]
    command += ["--rate", "250", "--format", fmt, "--output", str(path), "--nolineno", "--gil"]
    process = await asyncio.create_subprocess_exec(
        *procs.pinned(command, procs.client_cpu()),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # attached before the load starts
    await load(server.port, seconds + 1.0)
    _, stderr = await process.communicate()
    if process.returncode != 0 or not await asyncio.to_thread(path.exists):
        return f"py-spy failed ({process.returncode}): {stderr.decode(errors='replace')[-500:]}"
    return ""


# Entry points and the event loop's own frames: in nearly every stack, they say nothing.
PLUMBING = (
    "(threading.py)",
    "(asyncio/runners.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(click/core.py)",
    "(uvicorn/main.py)",
    "(uvicorn/_compat.py)",
    "(uvicorn/server.py)",
    "(uvicorn/__main__.py)",
    "(<frozen runpy>)",
    "(concurrent/futures/thread.py)",
)


def tally(rung: str, collapsed: str, top: int = 10) -> Profile:
    """Own and cumulative shares per frame from py-spy's collapsed stacks.

    Shares are of all samples (taken only while a thread holds the GIL). The cumulative
    ranking leaves out `PLUMBING` frames, which sit under almost every sample.
    """
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        total += count
        own[frames[-1]] += count
        packages[package(frames[-1])] += count
        for frame in set(frames):
            cumulative[frame] += count
    if not total:
        return Profile(rung, "py-spy", 0, [], error="no samples")

    def frame(name: str) -> Frame:
        return Frame(name, own[name] / total, cumulative[name] / total)

    return Profile(
        rung=rung,
        tool="py-spy",
        samples=total,
        files=[],
        top_own=[frame(name) for name, _ in own.most_common(top)],
        top_cumulative=[
            frame(name) for name, _ in cumulative.most_common() if not name.endswith(PLUMBING)
        ][:top],
        own_by_package=[(name, n / total) for name, n in packages.most_common(15)],
    )


def package(frame: str) -> str:
    """`get (django/core/cache.py)` -> `django`; a top-level module -> its name."""
    _, _, location = frame.rpartition(" (")
    location = location.rstrip(")")
    head = location.split("/", 1)[0]
    return head.removesuffix(".py") or location


async def record_pyinstrument(
    *, rung: str, server: procs.Server, out_dir: Path, stem: str, seconds: float, load: Load
) -> Profile:
    """Fallback: the same app under pyinstrument in a second server, stopped after `load`."""
    report = out_dir / f"{stem}-{rung}.pyinstrument.txt"
    server.wrapper = ["-m", "pyinstrument", "--renderer", "text", "--outfile", str(report)]
    await asyncio.to_thread(server.start)
    try:
        await load(server.port, seconds)
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGINT)  # pyinstrument writes on exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(server.process.wait, 30)
        await asyncio.to_thread(server.stop)
    if not await asyncio.to_thread(report.exists):
        return Profile(rung, "pyinstrument", 0, [], error="pyinstrument wrote no report")
    return Profile(rung, "pyinstrument", 0, [report.name])
