"""The run's PNG: CPU per request, throughput and p50/p95/p99 latency per rung."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.rungs import RUNGS


def render(results: dict[str, Any], path: Path) -> None:
    summaries = results["summaries"]
    labels = [rung.title for rung in RUNGS]
    rows = [summaries[rung.key] for rung in RUNGS]
    positions = list(range(len(rows)))
    figure, (cpu_axis, rate_axis, latency_axis) = plt.subplots(
        3, 1, figsize=(12, 12), sharex=True, constrained_layout=True
    )

    cpu_axis.bar(positions, [r["cpu_per_1k"] for r in rows], color="tab:purple")
    cpu_axis.set_ylabel("server CPU-s per 1,000 requests")
    cpu_axis.set_title("CPU per request (primary figure; DB ceilings: driver process)")

    rate_axis.bar(positions, [r["throughput"] for r in rows], color="tab:blue")
    rate_axis.set_ylabel("requests/s")
    rate_axis.set_yscale("log")
    rate_axis.set_title("Throughput (closed loop, median over rounds)")

    width = 0.27
    for offset, (key, color) in enumerate(
        (("p50_ms", "tab:green"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red"))
    ):
        latency_axis.bar(
            [p + (offset - 1) * width for p in positions],
            [r[key] for r in rows],
            width,
            label=key.split("_")[0],
            color=color,
        )
    latency_axis.set_ylabel("latency, ms")
    latency_axis.set_yscale("log")
    latency_axis.set_title("Latency per rung")
    latency_axis.legend()
    latency_axis.set_xticks(positions, labels, rotation=35, ha="right")

    stamp = results["meta"].get("stamp", "")
    figure.suptitle(f"Enrollment API benchmark {stamp} ({results['meta']['mongo']})")
    figure.savefig(path, dpi=110)
    plt.close(figure)
