"""The "course of 1,000,000 members" section of `make bench` (membership model v2).

A course of `BENCH_BIG_COURSE` members (default 1,000,000; 100,000 with BENCH_QUICK) is
built through the service's own bulk path (`assign-multiple`, ASSIGN_MAX_USERS ids per
request, the users seeded in SQL by `bench.seed --extra-users`), beside a course of 1,000
members built the same way. Measured: the time and the stand-in memory it took to build,
the size of both course documents, and then, interleaved in rounds, first-time and repeat
enrolls into each course: the server CPU per request and latency must not depend on the
course's size (docs/scaling.md, "Membership model").

Then the admin's reads of the big course, one request at a time (median of
`READ_REQUESTS` after `READ_WARMUP`): a roster page of 100 (`GET .../enrollments/?limit=100`)
at the start and deep into the course (a cursor 90 % of the way in), and the course report
(`GET .../report/`); each must stay under `READ_TARGET_MS` (issue 13).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bson
from pymongo import MongoClient

from bench.loadgen import Pool, encode_request
from bench.measure import http_window
from bench.stats import Summary
from bench.workload import HOST, Api, cycling, enroll_request

if TYPE_CHECKING:
    from bench.run import Bench

SMALL = 1_000
CHUNK = 10_000  # the default ASSIGN_MAX_USERS
# First-time enrolls per round and course, each by a fresh user (Settings.token_users have
# tokens): under load for the CPU figure (long enough that /proc's 10 ms CPU ticks do not
# matter), and one at a time for latency.
FIRST_PER_WINDOW = 1000
LATENCY_FIRST = 100
# Rounds of this section: more than the ladder's, because on a shared machine a window is
# easily disturbed; figures are medians over rounds, as in the ladder.
ROUNDS, QUICK_ROUNDS = 5, 2
# The admin's reads of the big course: medians of this many requests, one at a time.
READ_REQUESTS, READ_WARMUP = 15, 2
READ_TARGET_MS = 50.0
DEEP_FRACTION = 0.9


def _rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


async def _build(api: Api, course: str, ids: list[int]) -> tuple[float, int]:
    started = time.perf_counter()
    requests = 0
    for start in range(0, len(ids), CHUNK):
        report = await api.assign_multiple(course, ids[start : start + CHUNK])
        requests += 1
        if report["summary"]["enrolled"] != len(ids[start : start + CHUNK]):
            raise RuntimeError(f"bulk build answered {report['summary']}")
    return time.perf_counter() - started, requests


def _deep_cursor(uri: str, db: str, course: str, skip: int) -> str:
    """The id of the course's enrollment `skip` places in (insertion order, which is `_id`
    order for a course built by one client), to start a roster page deep in the course."""
    client: MongoClient = MongoClient(uri)
    try:
        doc = client[db].enrollments.find_one(
            {"course_id": bson.ObjectId(course)}, {"_id": 1}, skip=skip, sort=[("_id", 1)]
        )
        if doc is None:
            raise RuntimeError(f"no enrollment {skip} places into the course")
        return str(doc["_id"])
    finally:
        client.close()


async def _read_latency(api: Api, path: str, token: str) -> dict[str, Any]:
    """Latency of one admin GET, one request at a time: median, min and max in ms."""
    raw = encode_request("GET", path, host=HOST, token=token)
    times = []
    for i in range(READ_WARMUP + READ_REQUESTS):
        started = time.perf_counter()
        status, body = await api.pool.one(raw)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        if i >= READ_WARMUP:
            times.append(elapsed)
    return {
        "path": path,
        "requests": len(times),
        "p50_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
    }


async def measure_reads(bench: Bench, course: str, members: int, log: Callable[[str], None]):
    """The roster's first page, a deep page, and the report of the big course."""
    stack, token = bench.stack, bench.work.seeded.admin_token
    deep = _deep_cursor(stack.mongo_uri, stack.db_name, course, int(members * DEEP_FRACTION))
    reads = {}
    async with Pool("127.0.0.1", stack.servers["api"].port, 1) as pool:
        api = Api(pool, token)
        for key, path in (
            ("roster_first_page", f"/api/courses/{course}/enrollments/?limit=100"),
            ("roster_deep_page", f"/api/courses/{course}/enrollments/?limit=100&cursor={deep}"),
            ("report", f"/api/courses/{course}/report/"),
        ):
            reads[key] = await _read_latency(api, path, token)
            log(f"big course {key}: p50 {reads[key]['p50_ms']:.2f} ms")
    return reads


def _document_bytes(uri: str, db: str, course: str) -> int:
    client: MongoClient = MongoClient(uri)
    try:
        doc = client[db].courses.find_one({"_id": bson.ObjectId(course)})
        return len(bson.encode(doc))
    finally:
        client.close()


async def measure(bench: Bench, log: Callable[[str], None]) -> dict[str, Any]:
    stack, settings, seeded = bench.stack, bench.settings, bench.work.seeded
    members = seeded.extra_ids
    server = stack.servers["api"]
    async with Pool("127.0.0.1", server.port, 1) as pool:
        api = Api(pool, seeded.admin_token)
        small, big = await api.create_courses("Members", 2)
        await _build(api, small, members[:SMALL])
        rss_before = _rss_mib(stack.mongo_pid)
        log(f"building a course of {len(members):,} members through assign-multiple")
        build_seconds, build_requests = await _build(api, big, members)
        rss_after = _rss_mib(stack.mongo_pid)
        log(f"built in {build_seconds:.1f}s ({build_requests} requests)")
        detail = await api.call(
            encode_request("GET", f"/api/courses/{big}/", host=HOST, token=seeded.admin_token),
            200,
        )
    sizes = {
        "small": _document_bytes(stack.mongo_uri, stack.db_name, small),
        "big": _document_bytes(stack.mongo_uri, stack.db_name, big),
    }

    windows = []
    users = seeded.users
    per_round = FIRST_PER_WINDOW + LATENCY_FIRST
    courses = [("1k", small), ("big", big)]
    for round_ in range(1, (QUICK_ROUNDS if settings.quick else ROUNDS) + 1):
        batch = users[(round_ - 1) * per_round : round_ * per_round]
        # Alternate which course goes first, so drift over the run favours neither.
        for label, course in courses if round_ % 2 else courses[::-1]:
            loaded = cycling([enroll_request(course, u["access"]) for u in batch[LATENCY_FIRST:]])
            alone = cycling([enroll_request(course, u["access"]) for u in batch[:LATENCY_FIRST]])
            # CPU under load (the ladder's concurrency), then latency one request at a time,
            # where queueing behind other requests cannot hide a slower request.
            for kind, source, limit, duration, expect, concurrency in (
                ("first", loaded, FIRST_PER_WINDOW, 600.0, 201, settings.concurrency),
                ("repeat", loaded, None, settings.duration, 200, settings.concurrency),
                ("first_latency", alone, LATENCY_FIRST, 600.0, 201, 1),
                ("repeat_latency", alone, None, settings.duration / 2, 200, 1),
            ):
                window, _ = await http_window(
                    rung=f"members_{label}_enroll_{kind}",
                    round_=round_,
                    server=server,
                    mongo_pid=stack.mongo_pid,
                    source=source,
                    duration=duration,
                    concurrency=concurrency,
                    limit=limit,
                    expect=expect,
                )
                windows.append(window)
                log(
                    f"round {round_} {label} {kind}: {window.cpu_per_1k:.3f} CPU-s/1k, "
                    f"p50 {window.p50_ms:.2f} ms"
                )
    # Again once the ledger of applied operations is full (a first enroll is one each).
    sizes["big_after"] = _document_bytes(stack.mongo_uri, stack.db_name, big)
    summaries = {}
    for key in {w.rung for w in windows}:
        summaries[key] = Summary.of([w for w in windows if w.rung == key])
    return {
        "members": len(members),
        "big_course_id": big,
        "concurrency": settings.concurrency,
        "rounds": QUICK_ROUNDS if settings.quick else ROUNDS,
        "small_members": SMALL,
        "build_seconds": build_seconds,
        "build_requests": build_requests,
        "standin_rss_before_mib": rss_before,
        "standin_rss_after_mib": rss_after,
        "document_bytes": sizes,
        "detail_enrolled_users": len(detail.get("enrolled_users", [])),
        "detail_enrollers": detail["enrollers"],
        "summaries": {key: s.__dict__ for key, s in sorted(summaries.items())},
    }


async def measure_all(bench: Bench, log: Callable[[str], None]) -> dict[str, Any]:
    """The section: the enroll rounds, then the admin's reads of the big course."""
    results = await measure(bench, log)
    results["reads"] = await measure_reads(bench, results["big_course_id"], results["members"], log)
    return results


def _diff(small: float, big: float) -> str:
    return f"{(big - small) / small * 100:+.1f} %" if small else "-"


def lines(results: dict[str, Any]) -> list[str]:
    """The report's section (report.markdown)."""
    big = results.get("big_course")
    if not big:
        return []
    s = big["summaries"]
    n = big["members"]
    out = [
        "",
        f"## Course of {n:,} members (membership model v2)",
        "",
        f"Built through `assign-multiple` in {big['build_requests']} requests of up to "
        f"{CHUNK:,} ids: {big['build_seconds']:.1f} s. Stand-in RSS "
        f"{_mib(big['standin_rss_before_mib'])} before, {_mib(big['standin_rss_after_mib'])} "
        f"after. Course document: {big['document_bytes']['big']:,} bytes, "
        f"{big['document_bytes']['big_after']:,} once its ledger is full "
        f"({big['document_bytes']['small']:,} at {big['small_members']:,} members); the admin "
        f"detail lists {big['detail_enrolled_users']} of {big['detail_enrollers']:,} members.",
        "",
        f"Medians of {big['rounds']} rounds. CPU per request: the API server's, at "
        f"{big['concurrency']} concurrent connections. Latency: one request at a time, so "
        "that queueing behind other requests cannot hide a slower one.",
        "",
        f"| request | CPU ms/req at {big['small_members']:,} | at {n:,} | diff "
        f"| p50 ms at {big['small_members']:,} | at {n:,} | diff | p99 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("enroll_first", "enroll_repeat"):
        a, b = s[f"members_1k_{kind}"], s[f"members_big_{kind}"]
        la, lb = s[f"members_1k_{kind}_latency"], s[f"members_big_{kind}_latency"]
        out.append(
            f"| {kind.replace('_', ', ')} | {a['cpu_per_1k']:.3f} | {b['cpu_per_1k']:.3f} | "
            f"{_diff(a['cpu_per_1k'], b['cpu_per_1k'])} | {la['p50_ms']:.2f} | "
            f"{lb['p50_ms']:.2f} | {_diff(la['p50_ms'], lb['p50_ms'])} | {la['p99_ms']:.2f} | "
            f"{lb['p99_ms']:.2f} |"
        )
    worst = max(
        abs(s[f"members_big_{k}"][m] / s[f"members_1k_{k}"][m] - 1)
        for k, m in (
            ("enroll_first", "cpu_per_1k"),
            ("enroll_repeat", "cpu_per_1k"),
            ("enroll_first_latency", "p50_ms"),
            ("enroll_repeat_latency", "p50_ms"),
        )
        if s[f"members_1k_{k}"][m]
    )
    out += ["", f"Largest difference: {worst * 100:.1f} % (target < 10 %)."]
    return [*out, *read_lines(big)]


def read_lines(big: dict[str, Any]) -> list[str]:
    """The admin reads of the big course (roster pages, report) against READ_TARGET_MS."""
    reads = big.get("reads")
    if not reads:
        return []
    out = [
        "",
        f"Admin reads of the {big['members']:,}-member course, one request at a time "
        f"(median of {READ_REQUESTS}; target < {READ_TARGET_MS:g} ms each):",
        "",
        "| request | p50 ms | min ms | max ms | under target |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("roster_first_page", "roster, first page of 100"),
        ("roster_deep_page", f"roster, page of 100 at {DEEP_FRACTION:.0%} (cursor)"),
        ("report", "report"),
    ):
        r = reads[key]
        out.append(
            f"| {label} | {r['p50_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | "
            f"{'yes' if r['p50_ms'] < READ_TARGET_MS else 'NO'} |"
        )
    return out


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"
