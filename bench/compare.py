"""The API against bench/reference (FastAPI + PyMongo + PyJWT), in paired rounds.

Per variant (one worker on the server core; two workers on both cores) and per workload
(first-time enroll with a never-seen token, repeat enroll, course list), each round
measures one window on the API and one on the reference, back to back, in alternating
order (API first in odd rounds, reference first in even ones), so that drift and the
order within a pair cancel out. A pair's ratio is API CPU per request / reference CPU per
request; the report gives the median ratio and the spread (min-max) over the pairs, the
figure issue 17 asks for: ≤ 1.0x.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.stats import Window

WORKLOADS = (
    ("enroll_first", "enroll, first time (fresh token)", 201),
    ("enroll_repeat", "enroll, repeat", 200),
    ("course_list", "course list, 20/page", 200),
)


@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    api: str  # server names in bench.stack
    reference: str
    pairs: int


def variants(pairs: int, pairs_2w: int) -> tuple[Variant, ...]:
    every = (
        Variant("1w", "1 worker each, server core pinned", "api", "reference", pairs),
        Variant("2w", "2 workers each on 2 cores", "api_2w", "reference_2w", pairs_2w),
    )
    return tuple(variant for variant in every if variant.pairs > 0)


# (server name, workload, expected status, round, seconds) -> the measured window
Measure = Callable[[str, str, int, int, float], Awaitable[Window]]


async def run(variant: Variant, measure: Measure, seconds: float, log: Callable) -> list[dict]:
    """Warm both servers up on every workload, then `variant.pairs` paired rounds."""
    for workload, _, expect in WORKLOADS:
        for server in (variant.api, variant.reference):
            await measure(server, workload, expect, 0, 1.0)
    rows = []
    for round_ in range(1, variant.pairs + 1):
        for workload, _, expect in WORKLOADS:
            order = [variant.api, variant.reference]
            if round_ % 2 == 0:
                order.reverse()
            measured = {
                server: await measure(server, workload, expect, round_, seconds) for server in order
            }
            api, ref = measured[variant.api], measured[variant.reference]
            ratio = api.cpu_per_1k / ref.cpu_per_1k if ref.cpu_per_1k else None
            log(
                f"{variant.key} pair {round_} {workload}: API {api.cpu_per_1k:.3f} vs reference "
                f"{ref.cpu_per_1k:.3f} CPU-s/1k = {ratio or 0:.2f}x"
            )
            rows.append(
                {
                    "variant": variant.key,
                    "workload": workload,
                    "round": round_,
                    "ratio": ratio,
                    "api": api.as_dict(),
                    "reference": ref.as_dict(),
                }
            )
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant and workload: median and min-max of the per-pair ratios, and medians of
    each side's CPU per request, throughput and p99."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for workload, title, _ in WORKLOADS:
            pairs = [r for r in rows if r["variant"] == variant and r["workload"] == workload]
            ratios = [r["ratio"] for r in pairs if r["ratio"] is not None]
            if not ratios:
                continue

            def median(side: str, key: str, pairs: list[dict] = pairs) -> float:
                return statistics.median(r[side][key] for r in pairs)

            out.append(
                {
                    "variant": variant,
                    "workload": workload,
                    "title": title,
                    "pairs": len(ratios),
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "api_cpu_per_1k": median("api", "cpu_per_1k"),
                    "reference_cpu_per_1k": median("reference", "cpu_per_1k"),
                    "api_throughput": median("api", "throughput"),
                    "reference_throughput": median("reference", "throughput"),
                    "api_p99_ms": median("api", "p99_ms"),
                    "reference_p99_ms": median("reference", "p99_ms"),
                    "errors": sum(
                        r[s]["errors"] + r[s]["unexpected"]
                        for r in pairs
                        for s in ("api", "reference")
                    ),
                }
            )
    return out


def markdown(results: dict[str, Any]) -> list[str]:
    summary = results.get("comparison_summary") or []
    if not summary:
        return []
    titles = {v.key: v.title for v in variants(1, 1)}
    baseline = results.get("meta", {}).get("baseline")
    lines = [
        "## API vs the FastAPI reference (bench/reference)"
        if not baseline
        else f"## API vs the API at {baseline} (BENCH_BASELINE: 'reference' is that revision)",
        "",
        "Paired rounds, alternating which server goes first; ratio = API CPU per request / "
        "reference CPU per request, per pair. Goal (issue 17): median ≤ 1.00x.",
        "",
        "| variant | workload | pairs | ratio median | spread (min-max) | API CPU-s/1k | "
        "reference CPU-s/1k | API req/s | reference req/s | API p99 ms | reference p99 ms "
        "| errors | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {titles[s['variant']]} | {s['title']} | {s['pairs']} | **{s['ratio']:.2f}x** | "
            f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f}x | {s['api_cpu_per_1k']:.3f} | "
            f"{s['reference_cpu_per_1k']:.3f} | {s['api_throughput']:,.0f} | "
            f"{s['reference_throughput']:,.0f} | {s['api_p99_ms']:.1f} | "
            f"{s['reference_p99_ms']:.1f} | {s['errors']} | "
            f"{'met' if s['ratio'] <= 1.0 else '**unmet**'} |"
        )
    return [*lines, ""]
