"""Sessions stay off the API (issue 16): the hot path costs the same with a console cookie.

A browser signed in to the web console sends its session and CSRF cookies with every
request to the host, API calls included. Sessions, session authentication and messages
run for /admin/ and /console/ only (asgi_app.middleware.AdminOnlyMixin), so such a
request must cost what a JWT-only one costs: no session read, no cookie, no thread hop.

Per workload (repeat enroll, course list), each round measures one window with the JWT
only and one with the JWT plus the user's live console session cookie, back to back on
the same `api` server, alternating which goes first; a pair's ratio is CPU per request
with the cookie / without. Goal: the median ≤ 1.10x, within the noise (a session read
would add a SQL query and a worker-thread round trip to every request).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from bench.stats import Window

WORKLOADS = (
    ("enroll_repeat", "enroll, repeat", 200),
    ("course_list", "course list, 20/page", 200),
)
SIDES = ("jwt", "session")  # JWT only; JWT + the console's session and CSRF cookies
GOAL = 1.10  # back-to-back windows on this machine differ by up to ±30 %: a median of pairs

# (workload, with the console cookies, expected status, round, seconds) -> the window
Measure = Callable[[str, bool, int, int, float], Awaitable[Window]]


async def run(measure: Measure, pairs: int, seconds: float, log: Callable) -> list[dict]:
    """Warm both request kinds up on every workload, then `pairs` paired rounds."""
    for workload, _, expect in WORKLOADS:
        for cookies in (False, True):
            await measure(workload, cookies, expect, 0, 1.0)
    rows = []
    for round_ in range(1, pairs + 1):
        for workload, _, expect in WORKLOADS:
            order = [False, True] if round_ % 2 else [True, False]
            measured = {
                cookies: await measure(workload, cookies, expect, round_, seconds)
                for cookies in order
            }
            jwt, session = measured[False], measured[True]
            ratio = session.cpu_per_1k / jwt.cpu_per_1k if jwt.cpu_per_1k else None
            log(
                f"sessions pair {round_} {workload}: JWT {jwt.cpu_per_1k:.3f} vs JWT + console "
                f"cookie {session.cpu_per_1k:.3f} CPU-s/1k = {ratio or 0:.2f}x"
            )
            rows.append(
                {
                    "workload": workload,
                    "round": round_,
                    "ratio": ratio,
                    "jwt": jwt.as_dict(),
                    "session": session.as_dict(),
                }
            )
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload: median and min-max of the per-pair ratios, and each side's medians."""
    out = []
    for workload, title, _ in WORKLOADS:
        pairs = [r for r in rows if r["workload"] == workload]
        ratios = [r["ratio"] for r in pairs if r["ratio"] is not None]
        if not ratios:
            continue
        row: dict[str, Any] = {
            "workload": workload,
            "title": title,
            "pairs": len(ratios),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "errors": sum(r[s]["errors"] + r[s]["unexpected"] for r in pairs for s in SIDES),
        }
        for side in SIDES:
            for key in ("cpu_per_1k", "throughput", "p99_ms"):
                row[f"{side}_{key}"] = statistics.median(r[side][key] for r in pairs)
        out.append(row)
    return out


def markdown(results: dict[str, Any]) -> list[str]:
    summary = results.get("sessions_summary") or []
    if not summary:
        return []
    lines = [
        "## Sessions stay off the API (JWT only vs JWT + a console session cookie)",
        "",
        "Paired rounds on the same server, alternating which goes first; ratio = CPU per "
        "request with the signed-in console's session and CSRF cookies / with the JWT "
        f"only. Goal (issue 16): median ≤ {GOAL:.2f}x (no session read on the hot path).",
        "",
        "| workload | pairs | ratio median | spread (min-max) | JWT CPU-ms/req | "
        "+ cookie CPU-ms/req | JWT req/s | + cookie req/s | JWT p99 ms | + cookie p99 ms "
        "| errors | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['title']} | {s['pairs']} | **{s['ratio']:.2f}x** | "
            f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f}x | {s['jwt_cpu_per_1k']:.3f} | "
            f"{s['session_cpu_per_1k']:.3f} | {s['jwt_throughput']:,.0f} | "
            f"{s['session_throughput']:,.0f} | {s['jwt_p99_ms']:.1f} | "
            f"{s['session_p99_ms']:.1f} | {s['errors']} | "
            f"{'met' if s['ratio'] <= GOAL else '**unmet**'} |"
        )
    return [*lines, ""]
