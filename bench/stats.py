"""Measured windows and their summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Window:
    """One measured window of one rung: server-side CPU and RSS, client-side latency."""

    rung: str
    round: int
    requests: int
    errors: int
    unexpected: int  # 2xx answers other than the rung's expected status
    wall: float
    server_cpu: float  # seconds: the API server (or the driver process for a DB ceiling)
    client_cpu: float  # seconds: the load generator
    mongo_cpu: float | None  # seconds: the MongoDB stand-in, when it is ours
    peak_rss_mib: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_latencies(cls, latencies: Sequence[float], **fields: Any) -> Window:
        ms = [value * 1000 for value in latencies]
        p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
        return cls(p50_ms=p50, p95_ms=p95, p99_ms=p99, **fields)

    @property
    def throughput(self) -> float:
        return self.requests / self.wall if self.wall else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return self.server_cpu / self.requests * 1000 if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput, "cpu_per_1k": self.cpu_per_1k}


@dataclass
class Summary:
    """A rung over its rounds: medians, with the spread of the primary figure."""

    rung: str
    rounds: int
    cpu_per_1k: float
    cpu_per_1k_min: float
    cpu_per_1k_max: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    unexpected: int
    requests: int
    peak_rss_mib: float
    client_cpu_util: float  # generator CPU seconds per wall second (1.0 = one core busy)
    mongo_cpu_per_1k: float | None
    ratio_to_floor: float | None = None

    @classmethod
    def of(cls, windows: Sequence[Window]) -> Summary:
        cpu = [w.cpu_per_1k for w in windows]
        mongo = [w.mongo_cpu / w.requests * 1000 for w in windows if w.mongo_cpu and w.requests]
        return cls(
            rung=windows[0].rung,
            rounds=len(windows),
            cpu_per_1k=statistics.median(cpu),
            cpu_per_1k_min=min(cpu),
            cpu_per_1k_max=max(cpu),
            throughput=statistics.median(w.throughput for w in windows),
            p50_ms=statistics.median(w.p50_ms for w in windows),
            p95_ms=statistics.median(w.p95_ms for w in windows),
            p99_ms=statistics.median(w.p99_ms for w in windows),
            errors=sum(w.errors for w in windows),
            unexpected=sum(w.unexpected for w in windows),
            requests=sum(w.requests for w in windows),
            peak_rss_mib=max(w.peak_rss_mib for w in windows),
            client_cpu_util=max(w.client_cpu / w.wall for w in windows if w.wall),
            mongo_cpu_per_1k=statistics.median(mongo) if mongo else None,
        )


@dataclass
class BulkRun:
    """One bulk assign-multiple request, or one batch of single assigns, on a fresh course."""

    kind: str  # "bulk" or "singles"
    size: int
    round: int
    wall: float
    server_cpu: float
    errors: int
    peak_rss_mib: float
    enrolled: int
