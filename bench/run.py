"""`python -m bench`: start the stack, run the ladder, write bench/results/<timestamp>.*"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from pymongo import MongoClient

from bench import bigcourse, compare, meta, plot, procs, report, sessions
from bench import profile as profiling
from bench.loadgen import Pool, RequestSource, encode_request, new_event_loop
from bench.measure import CeilingRunner, Meter, http_window, open_loop_window
from bench.rungs import RUNG_BY_KEY, RUNGS, Rung, Settings
from bench.stack import Stack
from bench.stats import BulkRun, Summary, Window
from bench.workload import HOST, Api, Workload, build, console_cookies, cycling

RESULTS = Path(__file__).resolve().parent / "results"
PROFILED_RUNGS = ("enroll_first", "plain", "enroll_repeat", "course_list")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, stack: Stack, settings: Settings, stem: str) -> None:
        self.stack = stack
        self.settings = settings
        self.stem = stem
        self.workload: Workload | None = None
        self.stored_report_bytes: dict[str, dict[str, int]] = {}
        self.ceiling = CeilingRunner(
            uri=stack.mongo_uri,
            db=stack.ceiling_db,
            courses_file=stack.tmp / "ceiling-courses.txt",
            mongo_pid=stack.mongo_pid,
            concurrency=settings.concurrency,
        )

    @property
    def work(self) -> Workload:
        assert self.workload is not None
        return self.workload

    # ------------------------------------------------------------------------- ladder

    def _source(self, rung: Rung) -> tuple[RequestSource, int | None, Callable[[int], None]]:
        """The rung's request stream, its length limit, and what to do with the count sent."""
        work = self.work
        if rung.key.endswith("enroll_first"):
            source, left = work.enroll_pairs.source()
            return source, left, work.enroll_pairs.consumed
        streams: dict[str, Callable[[], RequestSource]] = {
            "raw": work.plain,
            "plain": work.plain,
            "plain_stock": work.plain,
            "auth_noop": work.auth_noop,
            "enroll_repeat": work.enroll_repeat,
            "motor_enroll_repeat": work.enroll_repeat,
            "course_list": work.course_list,
            "motor_course_list": work.course_list,
            "course_detail": work.course_detail,
        }
        return streams[rung.key](), None, lambda sent: None

    async def window(self, rung: Rung, round_: int, duration: float) -> Window:
        if rung.server is None:
            return await self.ceiling.window(
                rung=rung.key, round_=round_, driver=rung.driver, duration=duration, warmup=1.0
            )
        source, limit, consumed = self._source(rung)
        window, result = await http_window(
            rung=rung.key,
            round_=round_,
            server=self.stack.servers[rung.server],
            mongo_pid=self.stack.mongo_pid,
            source=source,
            duration=duration,
            concurrency=self.settings.concurrency,
            limit=limit,
            expect=rung.expect,
        )
        consumed(result.sent)
        return window

    async def ladder(self) -> list[Window]:
        log(f"warm-up: {self.settings.warmup:.0f}s per rung")
        for rung in RUNGS:
            if rung.server is not None:  # a DB ceiling window warms itself up
                await self.window(rung, 0, self.settings.warmup)
        windows = []
        for round_ in range(1, self.settings.rounds + 1):
            for rung in RUNGS:
                window = await self.window(rung, round_, self.settings.duration)
                log(
                    f"round {round_} {rung.key}: {window.throughput:.0f} req/s, "
                    f"{window.cpu_per_1k:.3f} CPU-s/1k, p99 {window.p99_ms:.1f} ms, "
                    f"{window.errors} errors"
                )
                windows.append(window)
        return windows

    # --------------------------------------------------------------------------- bulk

    async def bulk(self) -> list[BulkRun]:
        runs: list[BulkRun] = []
        server = self.stack.servers["api"]
        ids = self.work.seeded.all_ids
        async with Pool("127.0.0.1", server.port, 1) as pool:
            api = Api(pool, self.work.seeded.admin_token)
            for round_ in range(1, self.settings.bulk_rounds + 1):
                for size in self.settings.bulk_sizes:
                    runs.append(await self._bulk_one(api, round_, size, {"user_ids": ids[:size]}))
                    log(f"bulk {size}: {runs[-1].wall:.3f}s")
                # The same cohort named by email, as an HR export names it (mixed case:
                # compared case-insensitively): resolved in SQL before the MongoDB reads.
                size = max(self.settings.bulk_sizes)
                emails = {"emails": [f"Bench{i}@Example.com" for i in range(size)]}
                runs.append(await self._bulk_one(api, round_, size, emails, kind="bulk_emails"))
                log(f"bulk {size} emails: {runs[-1].wall:.3f}s")
                for size in self.settings.single_sizes:
                    runs.append(await self._singles(api, round_, size, ids[:size]))
                    log(f"{size} single assigns: {runs[-1].wall:.3f}s")
        return runs

    async def _bulk_one(
        self, api: Api, round_: int, size: int, body: dict[str, Any], kind: str = "bulk"
    ) -> BulkRun:
        server = self.stack.servers["api"]
        [course] = await api.create_courses(f"Bulk r{round_} n{size} {kind}", 1)
        raw = api.post(f"/api/courses/{course}/assign-multiple/", body)
        meter = Meter(server.pid, self.stack.mongo_pid)
        started = time.perf_counter()
        status, body = await api.pool.one(raw)
        wall = time.perf_counter() - started
        cpu, _, rss = meter.stop()
        report = json.loads(body) if status == 200 else {}
        enrolled = report["summary"]["enrolled"] if report else 0
        if report:
            self.stored_report_bytes[kind] = stored_report_bytes(
                self.stack.mongo_uri, self.stack.db_name, report["id"]
            )
        return BulkRun(kind, size, round_, wall, cpu, int(status != 200), rss, enrolled)

    async def _singles(self, api: Api, round_: int, size: int, ids: list[int]) -> BulkRun:
        [course] = await api.create_courses(f"Singles r{round_} n{size}", 1)
        requests = [api.post(f"/api/courses/{course}/assign/", {"user_id": uid}) for uid in ids]
        window, result = await http_window(
            rung=f"singles_{size}",
            round_=round_,
            server=self.stack.servers["api"],
            mongo_pid=self.stack.mongo_pid,
            source=cycling(requests),
            duration=600.0,
            concurrency=self.settings.concurrency,
            limit=size,
            expect=201,
        )
        enrolled = result.statuses.get(201, 0)
        return BulkRun(
            "singles",
            size,
            round_,
            window.wall,
            window.server_cpu,
            window.errors,
            window.peak_rss_mib,
            enrolled,
        )

    # ---------------------------------------------------------------------- open loop

    async def open_loop(self, max_throughput: float) -> dict[str, Any]:
        rate = max(1.0, max_throughput / 2)
        source, _ = self.work.enroll_pairs.source()
        window, result = await open_loop_window(
            rung="enroll_first_open_loop",
            server=self.stack.servers["api"],
            mongo_pid=self.stack.mongo_pid,
            source=source,
            rate=rate,
            duration=self.settings.open_loop_seconds,
            connections=self.settings.open_loop_connections,
            expect=201,
        )
        self.work.enroll_pairs.consumed(result.sent)
        log(f"open loop at {rate:.0f} req/s: p99 {window.p99_ms:.1f} ms")
        return {"target_rate": rate, "max_throughput": max_throughput, **window.as_dict()}

    # ---------------------------------------------------------------- reference pairs

    async def compare_window(
        self, server: str, workload: str, expect: int, round_: int, seconds: float
    ) -> Window:
        work = self.work
        limit, consumed = None, None
        if workload == "enroll_first":
            source, limit = work.fresh_pairs.source()
            consumed = work.fresh_pairs.consumed
        else:
            source = {"enroll_repeat": work.enroll_repeat, "course_list": work.course_list}[
                workload
            ]()
        window, result = await http_window(
            rung=f"{server}:{workload}",
            round_=round_,
            server=self.stack.servers[server],
            mongo_pid=self.stack.mongo_pid,
            source=source,
            duration=seconds,
            concurrency=self.settings.concurrency,
            limit=limit,
            expect=expect,
        )
        if consumed is not None:
            consumed(result.sent)
            if limit is not None and result.sent >= limit:
                log("fresh-token pairs ran out: raise Settings.fresh_users")
        return window

    async def comparison(self) -> list[dict[str, Any]]:
        rows = []
        settings = self.settings
        for variant in compare.variants(settings.compare_pairs, settings.compare_pairs_2w):
            log(f"reference comparison, {variant.title}: {variant.pairs} pairs")
            rows += await compare.run(variant, self.compare_window, settings.compare_seconds, log)
        return rows

    # ----------------------------------------------------------- sessions off the API

    async def session_window(
        self, workload: str, cookies: bool, expect: int, round_: int, seconds: float
    ) -> Window:
        source = {"enroll_repeat": self.work.enroll_repeat, "course_list": self.work.course_list}[
            workload
        ](cookies=cookies)
        window, _ = await http_window(
            rung=f"{'session' if cookies else 'jwt'}:{workload}",
            round_=round_,
            server=self.stack.servers["api"],
            mongo_pid=self.stack.mongo_pid,
            source=source,
            duration=seconds,
            concurrency=self.settings.concurrency,
            expect=expect,
        )
        return window

    async def sessions(self) -> list[dict[str, Any]]:
        """JWT only vs JWT + a live console session cookie (bench/sessions.py)."""
        user = self.work.seeded.users[0]
        page = encode_request(
            "GET", "/console/my-training/", host=HOST, cookie=console_cookies(user)
        )
        async with Pool("127.0.0.1", self.stack.servers["api"].port, 1) as pool:
            status, _ = await pool.one(page)
        if status != 200:  # the cookie must be a signed-in session, or this measures nothing
            raise RuntimeError(f"the seeded console session is not signed in: {status}")
        pairs = self.settings.session_pairs
        log(f"sessions off the API: {pairs} pairs per workload")
        return await sessions.run(self.session_window, pairs, self.settings.compare_seconds, log)

    # ------------------------------------------------------------------------ profile

    async def profiles(self) -> list[profiling.Profile]:
        results = []
        for key in PROFILED_RUNGS:
            rung = RUNG_BY_KEY[key]
            assert rung.server is not None
            server = self.stack.servers[rung.server]

            async def load(port: int, seconds: float, rung: Rung = rung) -> None:
                source, limit, consumed = self._source(rung)
                if rung.key == "enroll_first":  # as the reference comparison sends them
                    source, limit = self.work.fresh_pairs.source()
                    consumed = self.work.fresh_pairs.consumed
                async with Pool("127.0.0.1", port, self.settings.concurrency) as pool:
                    result = await pool.closed_loop(source, duration=seconds, limit=limit)
                consumed(result.sent)

            log(f"profiling {key} for {self.settings.profile_seconds:.0f}s (x2)")
            profile = profiling.Profile(key, "py-spy", 0, [], error="pyinstrument requested")
            if self.settings.profiler == "py-spy":
                profile = await profiling.record(
                    rung=key,
                    server=server,
                    out_dir=RESULTS,
                    stem=self.stem,
                    seconds=self.settings.profile_seconds,
                    load=load,
                )
            if profile.error:
                log(f"py-spy: {profile.error}; falling back to pyinstrument")
                fallback = procs.Server(
                    f"{server.name}_pyinstrument", server.app, server.env, server.log_path
                )
                profile = await profiling.record_pyinstrument(
                    rung=key,
                    server=fallback,
                    out_dir=RESULTS,
                    stem=self.stem,
                    seconds=self.settings.profile_seconds,
                    load=load,
                )
            results.append(profile)
        return results

    # ---------------------------------------------------------------------------- all

    async def run(self) -> dict[str, Any]:
        settings = self.settings
        async with Pool("127.0.0.1", self.stack.servers["api"].port, 1) as pool:
            self.workload = await build(
                pool,
                self.stack.seeded,  # type: ignore[arg-type]
                list_courses=settings.list_courses,
                enroll_courses=settings.enroll_courses,
                repeat_courses=settings.repeat_courses,
                repeat_users=settings.repeat_users,
                compare_courses=settings.compare_courses,
            )
        if settings.only == "bigcourse":
            return {"big_course": await bigcourse.measure_all(self, log)}
        if settings.only == "sessions":
            session_rows = await self.sessions()
            return {"sessions": session_rows, "sessions_summary": sessions.summarize(session_rows)}
        comparison = await self.comparison()
        session_rows = await self.sessions() if settings.session_pairs else []
        if settings.compare_only:
            profiles = await self.profiles() if settings.profile else []
            return {
                "comparison": comparison,
                "comparison_summary": compare.summarize(comparison),
                "sessions": session_rows,
                "sessions_summary": sessions.summarize(session_rows),
                "profiles": [asdict(p) for p in profiles],
            }
        windows = await self.ladder()
        summaries = summarize(windows)
        bulk = await self.bulk()
        big_course = await bigcourse.measure_all(self, log) if settings.big_course_members else None
        open_loop = await self.open_loop(summaries["enroll_first"].throughput)
        profiles = await self.profiles() if settings.profile else []
        return {
            "windows": [w.as_dict() for w in windows],
            "summaries": {key: asdict(s) for key, s in summaries.items()},
            "bulk": [asdict(run) for run in bulk],
            "stored_report_bytes": self.stored_report_bytes,
            "open_loop": open_loop,
            "big_course": big_course,
            "profiles": [asdict(p) for p in profiles],
            "comparison": comparison,
            "comparison_summary": compare.summarize(comparison),
            "sessions": session_rows,
            "sessions_summary": sessions.summarize(session_rows),
        }


def stored_report_bytes(uri: str, db: str, assignment_id: str) -> dict[str, int]:
    """BSON sizes of a stored assignment report: its head and its result chunks."""
    client: MongoClient = MongoClient(uri)
    try:
        oid = bson.ObjectId(assignment_id)
        head = client[db].assignments.find_one({"_id": oid})
        chunks = [
            len(bson.encode(c)) for c in client[db].assignment_results.find({"assignment_id": oid})
        ]
    finally:
        client.close()
    return {
        "head": len(bson.encode(head)),
        "chunks": len(chunks),
        "largest_chunk": max(chunks, default=0),
        "total": len(bson.encode(head)) + sum(chunks),
    }


def summarize(windows: list[Window]) -> dict[str, Summary]:
    summaries = {rung.key: Summary.of([w for w in windows if w.rung == rung.key]) for rung in RUNGS}
    floor = summaries["plain"].cpu_per_1k
    for summary in summaries.values():
        summary.ratio_to_floor = summary.cpu_per_1k / floor if floor else None
    return summaries


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=None, help="~2 minute smoke run")
    parser.add_argument(
        "--profile", action="store_true", default=None, help="py-spy the enroll and plain rungs"
    )
    parser.add_argument(
        "--compare-only",
        action="store_true",
        default=None,
        help="only the API vs reference pairs (BENCH_COMPARE_ONLY=1)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env(
        quick=args.quick, profile=args.profile, compare_only=args.compare_only
    )
    stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    procs.pin_self(procs.client_cpu())  # the generator's core; children pin themselves
    started, load_at_start = time.perf_counter(), meta.loadavg()
    log(f"{'quick' if settings.quick else 'full'} run {stem}; starting the stack")
    with Stack(
        users=settings.users,
        token_users=settings.token_users,
        extra_users=0 if settings.only == "sessions" else settings.big_course_members,
        fresh_users=settings.fresh_users,
        fresh_per_user=settings.compare_courses,
        sessions=settings.repeat_users,  # every repeat-enroll user: bench/sessions.py
    ) as stack:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            measured = runner.run(Bench(stack, settings, stem).run())
        info = meta.collect(stack, settings)
    info["elapsed_s"] = time.perf_counter() - started
    info["stamp"] = stem
    info["loadavg_start"] = load_at_start
    results = {"meta": info, "settings": asdict(settings), **measured}
    if settings.only == "bigcourse":
        markdown = (
            "\n".join(
                [f"# Big course only {stem} (BENCH_ONLY=bigcourse)", *bigcourse.lines(results)]
            )
            + "\n"
        )
    elif settings.only == "sessions":
        markdown = "\n".join([f"# Sessions only {stem}", "", *sessions.markdown(results)]) + "\n"
    elif settings.compare_only:
        lines = [
            f"# Reference comparison {stem}",
            "",
            *compare.markdown(results),
            *sessions.markdown(results),
        ]
        markdown = "\n".join([*lines, *report.profile_lines(results)]) + "\n"
    else:
        results["targets"] = report.targets(results)
        markdown = report.markdown(results)
        plot.render(results, RESULTS / f"{stem}.png")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    (RESULTS / f"{stem}.md").write_text(markdown)
    if not settings.only:
        plot.render_comparison(results, RESULTS / f"{stem}-reference.png")
    print(markdown)
    log(f"wrote {RESULTS}/{stem}.{{json,md,png}}, {stem}-reference.png in {info['elapsed_s']:.0f}s")
    return 0
