"""The ladder: what each rung sends, to which server, and the benchmark's settings."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Rung:
    key: str
    title: str
    server: str | None  # "raw", "api", "api_stock", "api_motor"; None: DB ceiling (no HTTP)
    driver: str = "pymongo"
    expect: int | None = None  # the one 2xx status every answer should have


FLOOR = "plain"

RUNGS: tuple[Rung, ...] = (
    Rung("raw", "1 raw ASGI app (ceiling)", "raw", expect=200),
    Rung("plain", "2 Django async view (floor)", "api", expect=200),
    Rung("plain_stock", "2s the same view, Django's stock ASGIHandler", "api_stock", expect=200),
    Rung("auth_noop", "3 JWT auth no-op", "api", expect=200),
    Rung("db_ceiling", "3b DB ceiling: enroll ops, pymongo", None, "pymongo"),
    Rung("enroll_first", "4 enroll, first time", "api", expect=201),
    Rung("enroll_repeat", "4 enroll, repeat", "api", expect=200),
    Rung("course_list", "5 course list, 20/page", "api", expect=200),
    Rung("course_detail", "5 course detail", "api", expect=200),
    Rung("db_ceiling_motor", "7 DB ceiling: enroll ops, motor", None, "motor"),
    Rung("motor_enroll_first", "7 enroll, first time (motor)", "api_motor", "motor", 201),
    Rung("motor_enroll_repeat", "7 enroll, repeat (motor)", "api_motor", "motor", 200),
    Rung("motor_course_list", "7 course list (motor)", "api_motor", "motor", 200),
)
RUNG_BY_KEY = {rung.key: rung for rung in RUNGS}


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int
    warmup: float  # seconds per rung, once, before round 1
    duration: float  # seconds per measured window
    concurrency: int
    bulk_sizes: tuple[int, ...]
    single_sizes: tuple[int, ...]
    bulk_rounds: int
    open_loop_seconds: float
    open_loop_connections: int
    profile: bool
    profile_seconds: float
    profiler: str = "py-spy"  # or "pyinstrument" (also the fallback when py-spy fails)
    users: int = 10_000
    token_users: int = 6_000  # bench.bigcourse spends 5,500 on first-time enrolls
    list_courses: int = 60
    enroll_courses: int = 100
    repeat_courses: int = 4
    repeat_users: int = 500
    big_course_members: int = 1_000_000  # bench.bigcourse; 0 skips that section
    # The reference comparison (bench/compare.py): paired rounds per variant, window length,
    # and the fresh-token first-time enrolls it may send (users x courses).
    compare_pairs: int = 5
    compare_pairs_2w: int = 3
    compare_seconds: float = 3.0
    compare_courses: int = 100
    fresh_users: int = 1_000
    # Sessions stay off the API (bench/sessions.py): paired rounds, JWT vs JWT + cookie.
    session_pairs: int = 3
    compare_only: bool = False  # only the reference comparison (a quick lever check)
    only: str = ""  # BENCH_ONLY=bigcourse: only the big-course section (bench/bigcourse.py)

    @classmethod
    def from_env(
        cls,
        *,
        quick: bool | None = None,
        profile: bool | None = None,
        compare_only: bool | None = None,
    ) -> Settings:
        if quick is None:
            quick = os.environ.get("BENCH_QUICK", "") not in {"", "0"}
        if profile is None:
            profile = os.environ.get("BENCH_PROFILE", "") not in {"", "0"}
        if compare_only is None:
            compare_only = os.environ.get("BENCH_COMPARE_ONLY", "") not in {"", "0"}
        rounds = int(os.environ.get("BENCH_ROUNDS", "2" if quick else "3"))
        return cls(
            quick=quick,
            rounds=rounds,
            warmup=1.0 if quick else 2.0,
            duration=2.0 if quick else 5.0,
            concurrency=int(os.environ.get("BENCH_CONCURRENCY", "32")),
            bulk_sizes=(100, 1_000, 10_000),
            single_sizes=(100, 1_000),
            bulk_rounds=1 if quick else 3,
            open_loop_seconds=4.0 if quick else 10.0,
            open_loop_connections=128,
            profile=profile,
            profile_seconds=4.0 if quick else 10.0,
            profiler=os.environ.get("BENCH_PROFILER", "py-spy"),
            big_course_members=int(
                os.environ.get("BENCH_BIG_COURSE", "100000" if quick else "1000000")
            ),
            compare_pairs=int(os.environ.get("BENCH_PAIRS", "3" if quick else "5")),
            compare_pairs_2w=int(os.environ.get("BENCH_PAIRS_2W", "2" if quick else "3")),
            compare_seconds=2.0 if quick else 3.0,
            # Many pairs (BENCH_PAIRS) of a fast server use more fresh tokens than the default.
            fresh_users=int(os.environ.get("BENCH_FRESH_USERS", "400" if quick else "1000")),
            session_pairs=int(os.environ.get("BENCH_SESSION_PAIRS", "2" if quick else "3")),
            compare_only=compare_only,
            only=_only(os.environ.get("BENCH_ONLY", "")),
        )


ONLY_SECTIONS = ("", "bigcourse", "sessions")


def _only(value: str) -> str:
    if value not in ONLY_SECTIONS:
        raise SystemExit(f"BENCH_ONLY={value!r}: one of {', '.join(ONLY_SECTIONS[1:])} (or unset)")
    return value
