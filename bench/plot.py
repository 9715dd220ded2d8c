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


def render_comparison(results: dict[str, Any], path: Path) -> None:
    """Per workload and variant: every pair's API / reference CPU ratio, and the median."""
    rows = results.get("comparison") or []
    summary = results.get("comparison_summary") or []
    if not summary:
        return
    figure, axis = plt.subplots(figsize=(11, 5.5), constrained_layout=True)
    labels = []
    for position, s in enumerate(summary):
        labels.append(f"{s['title']}\n{s['variant']}")
        ratios = [
            r["ratio"]
            for r in rows
            if r["variant"] == s["variant"] and r["workload"] == s["workload"] and r["ratio"]
        ]
        color = "tab:green" if s["ratio"] <= 1.0 else "tab:red"
        axis.bar(position, s["ratio"], 0.6, color=color, alpha=0.45)
        axis.scatter([position] * len(ratios), ratios, color="black", s=14, zorder=3)
        axis.annotate(f"{s['ratio']:.2f}x", (position, s["ratio"]), ha="center", va="bottom")
    axis.axhline(1.0, color="black", linestyle="--", linewidth=1)
    axis.set_xticks(range(len(summary)), labels, rotation=20, ha="right")
    axis.set_ylabel("API CPU per request / reference CPU per request")
    axis.set_title(
        "API vs FastAPI reference: median of paired rounds (bar), each pair (dots); "
        "below 1.0 the API is cheaper"
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
