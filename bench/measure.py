"""Measured windows: the /proc readings around a load, turned into `Window`s."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.loadgen import Pool, RequestSource, WindowResult
from bench.procs import ROOT, Server
from bench.stats import Window


@dataclass
class Meter:
    """CPU of the measured process and of the MongoDB stand-in, across one window."""

    pid: int
    mongo_pid: int | None
    tree: bool = False  # the process and its children (a multi-worker server)

    def _cpu(self) -> float:
        return procs.tree_cpu_seconds(self.pid) if self.tree else procs.cpu_seconds(self.pid)

    def __post_init__(self) -> None:
        procs.reset_peak_rss(self.pid)
        self.cpu = self._cpu()
        self.mongo = procs.cpu_seconds(self.mongo_pid) if self.mongo_pid else None

    def stop(self) -> tuple[float, float | None, float]:
        """(server CPU s, stand-in CPU s or None, peak RSS MiB) since the meter started."""
        cpu = self._cpu() - self.cpu
        mongo = None
        if self.mongo_pid and self.mongo is not None:
            mongo = procs.cpu_seconds(self.mongo_pid) - self.mongo
        return cpu, mongo, procs.peak_rss_mib(self.pid)


def _unexpected(statuses: Counter[int], expect: int | None) -> int:
    if expect is None:
        return 0
    return sum(n for status, n in statuses.items() if 200 <= status < 300 and status != expect)


async def http_window(
    *,
    rung: str,
    round_: int,
    server: Server,
    mongo_pid: int | None,
    source: RequestSource,
    duration: float,
    concurrency: int,
    limit: int | None = None,
    expect: int | None = None,
) -> tuple[Window, WindowResult]:
    async with Pool("127.0.0.1", server.port, concurrency) as pool:
        meter = Meter(server.pid, mongo_pid, tree=server.workers > 1)
        result = await pool.closed_loop(source, duration=duration, limit=limit)
        cpu, mongo_cpu, rss = meter.stop()
    return _window(rung, round_, result, cpu, mongo_cpu, rss, expect), result


async def open_loop_window(
    *,
    rung: str,
    server: Server,
    mongo_pid: int | None,
    source: RequestSource,
    rate: float,
    duration: float,
    connections: int,
    expect: int | None = None,
) -> tuple[Window, WindowResult]:
    async with Pool("127.0.0.1", server.port, connections) as pool:
        meter = Meter(server.pid, mongo_pid)
        result = await pool.open_loop(source, rate=rate, duration=duration)
        cpu, mongo_cpu, rss = meter.stop()
    return _window(rung, 0, result, cpu, mongo_cpu, rss, expect), result


def _window(
    rung: str,
    round_: int,
    result: WindowResult,
    cpu: float,
    mongo_cpu: float | None,
    rss: float,
    expect: int | None,
) -> Window:
    return Window.from_latencies(
        result.latencies,
        rung=rung,
        round=round_,
        requests=result.sent,
        errors=result.errors,
        unexpected=_unexpected(result.statuses, expect),
        wall=result.wall,
        server_cpu=cpu,
        client_cpu=result.client_cpu,
        mongo_cpu=mongo_cpu,
        peak_rss_mib=rss,
        statuses={str(k): v for k, v in sorted(result.statuses.items())},
    )


@dataclass
class CeilingRunner:
    """Runs `bench.dbceiling` pinned to the server core; fresh pairs on every window."""

    uri: str
    db: str
    courses_file: Path
    mongo_pid: int | None
    concurrency: int
    next_pair: int = 0

    async def window(
        self, *, rung: str, round_: int, driver: str, duration: float, warmup: float
    ) -> Window:
        command = [sys.executable, "-m", "bench.dbceiling", "--uri", self.uri, "--db", self.db]
        command += ["--driver", driver, "--courses", str(self.courses_file)]
        command += ["--concurrency", str(self.concurrency), "--duration", str(duration)]
        command += ["--warmup", str(warmup), "--offset", str(self.next_pair)]
        process = await asyncio.create_subprocess_exec(
            *procs.pinned(command, procs.server_cpu()),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        # Stand-in CPU over the whole child run, scaled to the measured window below.
        mongo_before = procs.cpu_seconds(self.mongo_pid) if self.mongo_pid else None
        stdout, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"bench.dbceiling exited with {process.returncode}")
        data = json.loads(stdout)
        self.next_pair += data["consumed"]
        mongo_cpu = None
        if self.mongo_pid and mongo_before is not None:
            total = procs.cpu_seconds(self.mongo_pid) - mongo_before
            mongo_cpu = total * data["wall"] / (data["wall"] + warmup)
        return Window.from_latencies(
            data["latencies"],
            rung=rung,
            round=round_,
            requests=data["sent"],
            errors=data["errors"],
            unexpected=0,
            wall=data["wall"],
            server_cpu=data["cpu"],
            client_cpu=data["cpu"],
            mongo_cpu=mongo_cpu,
            peak_rss_mib=data["peak_rss_mib"],
        )
