"""`make loadtest`: start the stack, run locust headless, verify, print PASS/FAIL.

    .venv/bin/python loadtest/run.py

Starts everything itself: the MongoDB stand-in (unless MONGODB_URI is set; then a fresh
database `loadtest_<timestamp>` on that server), a temporary SQLite users database
(migrated), an admin (`createsuperuser --noinput`), pre-created cohort users for the admin
scenario, and uvicorn on a free port. Then creates the hot course and a catalogue as that
admin, runs `locust --headless --csv loadtest/results/<timestamp>`, and afterwards checks:

- locust recorded zero failed requests (its failures CSV) and no exceptions;
- for every course (membership model v2): enrollers == number of enrollment documents,
  enrolled_users holds min(enrollers, COURSE_EMBEDDED_MEMBERS) distinct members (all of
  them below the cap), and no duplicate (course_id, user_id) pair (read from MongoDB
  directly with pymongo). Which members are the most recent is the order in which their
  course updates applied, which only the array records; the summary reports how many
  unlisted members have a newer operation id than the oldest listed one (overlapping
  requests);
- every enrollment the API confirmed to the clients exists, and nothing else does;
- the lifecycle (version 2) invariants, every course: enrollers == number of `active` +
  `completed` enrollments, enrollers <= capacity, waitlisted enrollments only while the
  course is full; when all members fit the array, enrolled_users is exactly them;
- for the capped course (scenario `lifecycle`): the waitlist the admin roster shows
  (`?status=waitlisted`, read page by page before the server stops) has positions 1..n
  without gaps, in join order (ascending `waitlist_key` in MongoDB), and is exactly the
  waitlisted enrollments in MongoDB.

Environment (all optional):

    LOADTEST_USERS=200  LOADTEST_RATE=50  LOADTEST_DURATION=60s
    LOADTEST_SCENARIO=spike        spike | browse | admin | lifecycle | mixed, or a comma list
    LOADTEST_CAPACITY=             seats of the capped course (lifecycle); default users / 4
    WEB_CONCURRENCY=2              uvicorn workers
    LOADTEST_PASSWORD_HASHERS=md5  md5 (fast hashing for registration) or default (PBKDF2)
    LOADTEST_COHORT_USERS=3000     pre-created users for the admin's cohorts
    LOADTEST_CATALOGUE=40          extra courses besides the hot one
    LOADTEST_RESULTS=loadtest/results   LOADTEST_LABEL=   (suffix of the result names)
    MONGODB_URI                    use a real MongoDB instead of the stand-in
    LOADTEST_TARGET=api            api, or reference: the spike against bench/reference
                                   (FastAPI), same workers and settings; users still
                                   register and log in on the API (LOADTEST_AUTH_HOST)
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import reference_command  # noqa: E402
from devstack.stack import UvicornProcess, run_manage, start_mongo  # noqa: E402

SCENARIOS = {
    "spike": ["SpikeUser"],
    "browse": ["BrowseUser"],
    "admin": ["AdminUser"],
    "lifecycle": ["LifecycleUser"],
    "mixed": ["SpikeUser", "BrowseUser", "AdminUser"],
}
MD5 = "django.contrib.auth.hashers.MD5PasswordHasher"
ADMIN_USERNAME = "loadtest-admin"
TARGETS = {
    "api": "the API (asgi_app)",
    "reference": "bench/reference (FastAPI + PyMongo + PyJWT); registrations on the API",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")

CREATE_COHORT = """
import json, os
from django.contrib.auth.hashers import make_password
from accounts.models import User
n = int(os.environ["LOADTEST_COHORT_USERS"])
unusable = make_password(None)
User.objects.bulk_create(
    [User(username=f"cohort{i}", email=f"cohort{i}@example.com", password=unusable)
     for i in range(n)],
    batch_size=500,
)
ids = list(User.objects.filter(username__startswith="cohort").values_list("id", flat=True))
with open(os.environ["LOADTEST_COHORT_FILE"], "w") as fh:
    json.dump(ids, fh)
"""


@dataclass
class Config:
    users: int = int(os.environ.get("LOADTEST_USERS", "200"))
    rate: float = float(os.environ.get("LOADTEST_RATE", "50"))
    duration: str = os.environ.get("LOADTEST_DURATION", "60s")
    scenario: str = os.environ.get("LOADTEST_SCENARIO", "spike")
    workers: int = int(os.environ.get("WEB_CONCURRENCY", "2"))
    hashers: str = os.environ.get("LOADTEST_PASSWORD_HASHERS", "md5")
    cohort_users: int = int(os.environ.get("LOADTEST_COHORT_USERS", "3000"))
    catalogue: int = int(os.environ.get("LOADTEST_CATALOGUE", "40"))
    results: Path = Path(os.environ.get("LOADTEST_RESULTS", str(ROOT / "loadtest" / "results")))
    label: str = os.environ.get("LOADTEST_LABEL", "")
    mongodb_uri: str = os.environ.get("MONGODB_URI", "")
    target: str = os.environ.get("LOADTEST_TARGET", "api")
    capacity: int = int(os.environ.get("LOADTEST_CAPACITY") or 0)
    user_classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target not in ("api", "reference"):
            raise SystemExit(f"unknown LOADTEST_TARGET {self.target!r}; api or reference")
        if self.target == "reference" and self.scenario != "spike":
            raise SystemExit("LOADTEST_TARGET=reference runs the spike scenario only")
        for name in self.scenario.split(","):
            if name.strip() not in SCENARIOS:
                raise SystemExit(f"unknown LOADTEST_SCENARIO {name!r}; one of {list(SCENARIOS)}")
            self.user_classes += [c for c in SCENARIOS[name.strip()] if c not in self.user_classes]
        self.capacity = self.capacity or max(self.users // 4, 1)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


# ------------------------------------------------------------------------------ helpers


def manage(*args: str, env: dict[str, str]) -> None:
    run_manage(*args, env=env, stdout=subprocess.DEVNULL)


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        found.append(current)
        frontier += children.get(current, [])
    return found


def tree_cpu(pid: int | None) -> float:
    return 0.0 if pid is None else sum(proc_cpu_seconds(p) for p in descendants(pid))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def admin_headers(client: httpx.Client, password: str) -> dict[str, str]:
    login = client.post("/api/auth/login/", json={"username": ADMIN_USERNAME, "password": password})
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access']}"}


def create_courses(
    base: str, password: str, count: int, capacity: int
) -> tuple[str, str, list[str]]:
    """(hot course, capped course with `capacity` seats, courses the admin assigns to)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        headers = admin_headers(client, password)

        def course(title: str, seats: int | None = None) -> str:
            response = client.post(
                "/api/courses/",
                headers=headers,
                json={
                    "course_title": title,
                    "course_description": "Created by loadtest/run.py.",
                    "display_price": {"amount": "0.00", "currency": "USD"},
                    "capacity": seats,
                },
            )
            response.raise_for_status()
            return response.json()["id"]

        catalogue = [course(f"Catalogue course {i + 1}") for i in range(count)]
        cohort_courses = [course(f"Onboarding cohort {c}") for c in "ABC"]
        hot = course("Mandatory: Security Awareness (hot course)")
        capped = course("Workshop with a waitlist (capped hot course)", capacity)
    return hot, capped, [hot, *cohort_courses, *catalogue[:2]]


def read_waitlist(base: str, password: str, course_id: str) -> list[tuple[int, int]]:
    """(user_id, waitlist_position) of every waitlisted enrollment, through the admin
    roster (`?status=waitlisted`), following `next` page by page."""
    rows: list[tuple[int, int]] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        headers = admin_headers(client, password)
        url: str | None = f"/api/courses/{course_id}/enrollments/?status=waitlisted&limit=100"
        while url:
            response = client.get(url, headers=headers)
            response.raise_for_status()
            body = response.json()
            rows += [(r["user_id"], r["waitlist_position"]) for r in body["results"]]
            url = body["next"]
    return rows


class ReferenceProcess(UvicornProcess):
    """bench/reference (FastAPI) under plain uvicorn, with the API's workers and env."""

    def command(self) -> list[str]:
        return reference_command(self.app, self.host, self.port, self.options)


# --------------------------------------------------------------------------- verification


def read_stats(prefix: Path) -> list[dict[str, str]]:
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def steady_state(prefix: Path, users: int) -> dict[str, float]:
    """Aggregated throughput once every user is running, from locust's 1 s history rows."""
    path = Path(f"{prefix}_stats_history.csv")
    if not path.exists():
        return {}
    with path.open() as fh:
        rows = [
            (int(r["Timestamp"]), int(r["Total Request Count"]))
            for r in csv.DictReader(fh)
            if r["Name"] == "Aggregated" and int(r["User Count"] or 0) >= users
        ]
    if len(rows) < 3:
        return {}
    rates = sorted(
        (c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in itertools.pairwise(rows) if t1 > t0
    )
    (t_first, c_first), (t_last, c_last) = rows[0], rows[-1]
    return {
        "seconds": t_last - t_first,
        "rps": (c_last - c_first) / max(t_last - t_first, 1),
        "p10_rps_1s": rates[len(rates) // 10],
        "p90_rps_1s": rates[len(rates) * 9 // 10],
    }


def check_locust(prefix: Path, stats: list[dict[str, str]]) -> list[Check]:
    checks = []
    failures_path = Path(f"{prefix}_failures.csv")
    if failures_path.exists():
        with failures_path.open() as fh:
            rows = list(csv.DictReader(fh))
        occurrences = sum(int(r.get("Occurrences", 0)) for r in rows)
        detail = "; ".join(f"{r['Name']}: {r['Error'][:160]} x{r['Occurrences']}" for r in rows[:5])
        checks.append(Check("zero failed requests (failures CSV)", occurrences == 0, detail))
    else:
        checks.append(Check("zero failed requests (failures CSV)", False, "no failures CSV"))
    aggregated = next((r for r in stats if r["Name"] == "Aggregated"), None)
    requests = int(aggregated["Request Count"]) if aggregated else 0
    checks.append(Check("requests were made", requests > 0, f"{requests} requests"))
    exceptions_path = Path(f"{prefix}_exceptions.csv")
    if exceptions_path.exists():
        with exceptions_path.open() as fh:
            rows = list(csv.DictReader(fh))
        detail = "; ".join(r.get("Message", "")[:160] for r in rows[:3])
        checks.append(Check("no exceptions in locust users", not rows, detail))
    return checks


MEMBER_STATUSES = ("active", "completed")


def check_waitlist(waitlisted: dict[int, int], api_rows: list[tuple[int, int]] | None) -> Check:
    """The roster's waitlist (user_id, position) against MongoDB's waitlisted enrollments
    ({user_id: waitlist_key}): the same users, positions 1..n, in ascending key order."""
    name = "capped course: waitlist positions 1..n in join order (waitlist_key), per the roster"
    if api_rows is None:
        return Check(name, False, "the roster was not read")
    by_key = [uid for uid, _ in sorted(waitlisted.items(), key=lambda item: item[1])]
    by_position = [uid for uid, _ in sorted(api_rows, key=lambda row: row[1])]
    positions = sorted(position for _, position in api_rows)
    problems = []
    if len(set(waitlisted.values())) != len(waitlisted):
        problems.append("two waitlisted enrollments share a waitlist_key")
    if positions != list(range(1, len(api_rows) + 1)):
        problems.append(f"positions are not 1..{len(api_rows)}: {positions[:10]}...")
    if set(by_position) != set(by_key):
        problems.append(f"roster lists {len(api_rows)} waitlisted, MongoDB holds {len(waitlisted)}")
    elif by_position != by_key:
        problems.append("position order differs from waitlist_key order")
    return Check(name, not problems, f"{len(api_rows)} waitlisted; " + "; ".join(problems))


def check_invariants(
    uri: str,
    db_name: str,
    ledger: dict[str, Any],
    embedded: int,
    waitlist_rows: list[tuple[int, int]] | None = None,
) -> tuple[list[Check], dict]:
    client: MongoClient = MongoClient(uri, tz_aware=True)
    ops: dict[tuple[str, int], int] = {}
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    members_of: dict[str, set[int]] = defaultdict(set)
    waitlist_keys: dict[str, dict[int, int]] = defaultdict(dict)
    try:
        db = client[db_name]
        courses = {
            str(doc["_id"]): doc
            for doc in db.courses.find(
                {}, {"enrollers": 1, "capacity": 1, "enrolled_users.user_id": 1}
            )
        }
        pairs: Counter[tuple[str, int]] = Counter()
        projection = {"course_id": 1, "user_id": 1, "op": 1, "status": 1, "waitlist_key": 1}
        for doc in db.enrollments.find({}, {**projection, "_id": 0}):
            course_id = str(doc["course_id"])
            pair = (course_id, doc["user_id"])
            pairs[pair] += 1
            ops[pair] = doc.get("op") or 0
            status = doc.get("status", "active")
            statuses[course_id][status] += 1
            if status in MEMBER_STATUSES:
                members_of[course_id].add(doc["user_id"])
            elif status == "waitlisted":
                waitlist_keys[course_id][doc["user_id"]] = doc.get("waitlist_key")
    finally:
        client.close()

    per_course: dict[str, set[int]] = defaultdict(set)
    for course_id, user_id in pairs:
        per_course[course_id].add(user_id)
    duplicates = [pair for pair, n in pairs.items() if n > 1]
    orphans = sorted(set(per_course) - set(courses))
    bad_courses = []
    overtaken = 0
    for course_id, doc in courses.items():
        listed = [u["user_id"] for u in doc.get("enrolled_users", [])]
        members = members_of[course_id]
        count = len(members)
        capacity = doc.get("capacity")
        waitlisted = statuses[course_id]["waitlisted"]
        right = (
            doc["enrollers"] == count
            and len(listed) == len(set(listed)) == min(count, embedded)
            and set(listed) <= members
            and (capacity is None or doc["enrollers"] <= capacity)
            and (waitlisted == 0 or (capacity is not None and doc["enrollers"] == capacity))
        )
        if not right:
            bad_courses.append(
                f"{course_id}: enrollers={doc['enrollers']} capacity={capacity} "
                f"len(enrolled_users)={len(listed)} statuses={dict(statuses[course_id])} "
                f"distinct_listed={len(set(listed))} non_members={len(set(listed) - members)}"
            )
        if listed and len(listed) < count:
            oldest = min(ops[(course_id, uid)] for uid in listed if (course_id, uid) in ops)
            overtaken += sum(1 for uid in members - set(listed) if ops[(course_id, uid)] > oldest)
    checks = [
        Check(
            "enrollers == active + completed enrollments <= capacity; waitlisted only while "
            f"full; enrolled_users = min(enrollers, {embedded}) distinct members, every course",
            not bad_courses,
            f"{len(courses)} courses checked"
            + ("; " + "; ".join(bad_courses[:5]) if bad_courses else ""),
        ),
        Check(
            "no duplicate (course_id, user_id) enrollment",
            not duplicates,
            f"{sum(pairs.values())} enrollment documents"
            + (f"; duplicates: {duplicates[:5]}" if duplicates else ""),
        ),
        Check("no enrollment of a missing course", not orphans, ", ".join(orphans[:5])),
    ]
    if ledger:
        confirmed = {c: set(ids) for c, ids in ledger.get("confirmed", {}).items()}
        missing = sum(len(ids - per_course[c]) for c, ids in confirmed.items())
        unconfirmed = sum(len(per_course[c] - confirmed.get(c, set())) for c in per_course)
        checks.append(
            Check(
                "every enrollment confirmed to a client exists, and only those",
                missing == 0 and unconfirmed == 0,
                f"{sum(len(v) for v in confirmed.values())} confirmed; missing in MongoDB: "
                f"{missing}; in MongoDB but never confirmed: {unconfirmed}",
            )
        )
        problems = ledger.get("problems", [])
        checks.append(
            Check(
                "no contract violations seen by the clients", not problems, "; ".join(problems[:3])
            )
        )
    else:
        checks.append(Check("locust wrote its ledger", False, "ledger missing"))
    hot = ledger.get("hot_course", "")
    capped = ledger.get("capped_course", "")
    if capped and waitlist_rows is not None:  # read after the lifecycle scenario only
        checks.append(check_waitlist(waitlist_keys[capped], waitlist_rows))
    facts = {
        "courses": len(courses),
        "enrollment_documents": sum(pairs.values()),
        "hot_course_enrollers": courses.get(hot, {}).get("enrollers"),
        "capped_course": {
            "capacity": courses.get(capped, {}).get("capacity"),
            "enrollers": courses.get(capped, {}).get("enrollers"),
            "statuses": dict(statuses[capped]),
        }
        if capped
        else None,
        "unlisted_members_newer_than_the_oldest_listed": overtaken,
    }
    return checks, facts


# -------------------------------------------------------------------------------- summary


def fmt_row(r: dict[str, str]) -> str:
    cells = [
        r["Type"],
        r["Name"],
        r["Request Count"],
        r["Failure Count"],
        f"{float(r['Requests/s']):.1f}",
        r["50%"],
        r["95%"],
        r["99%"],
        r["100%"],
    ]
    return "| " + " | ".join(cells) + " |"


def summary_markdown(
    cfg: Config,
    stamp: str,
    stats: list[dict[str, str]],
    checks: list[Check],
    facts: dict[str, Any],
) -> str:
    verdict = "PASS" if all(c.ok for c in checks) else "FAIL"
    lines = [
        f"# Load test {stamp}: {verdict}",
        "",
        f"- scenario `{cfg.scenario}` ({', '.join(cfg.user_classes)}), {cfg.users} users, "
        f"spawn rate {cfg.rate:g}/s, duration {cfg.duration}",
        f"- target: {TARGETS[cfg.target]}",
        f"- server: uvicorn, {cfg.workers} worker(s), DEBUG=0, THROTTLE_DISABLED=1, "
        f"password hasher: {'MD5 (load test only)' if cfg.hashers == 'md5' else 'PBKDF2'}",
        f"- MongoDB: {'real server (MONGODB_URI)' if cfg.mongodb_uri else 'the stand-in'}; "
        "users DB: SQLite (temporary file)",
        f"- machine: {os.cpu_count()} CPUs; load average before the run "
        f"{facts.get('loadavg_before', '?')}; locust, server and MongoDB share these CPUs",
        "",
        "## Requests (times in ms; req/s averaged over the whole run, ramp-up included)",
        "",
        "| type | name | requests | failures | req/s | p50 | p95 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[fmt_row(r) for r in stats],
        "",
    ]
    steady = facts.get("steady_state", {})
    if steady:
        lines += [
            "",
            f"Steady state (all users running, {steady['seconds']} s): "
            f"{steady['rps']:.0f} req/s; one-second windows p10 {steady['p10_rps_1s']:.0f}, "
            f"p90 {steady['p90_rps_1s']:.0f} req/s.",
        ]
    lines += [
        "",
        "## CPU during the run",
        "",
    ]
    cpu = facts.get("cpu", {})
    if cpu:
        wall = cpu["wall_s"]
        busy_pct = 100 * cpu["machine_busy_s"] / max(cpu["machine_total_s"], 1e-9)
        lines += [
            f"- wall time {wall:.1f} s; machine busy {cpu['machine_busy_s']:.1f} CPU-s "
            f"of {cpu['machine_total_s']:.1f} ({busy_pct:.0f}%)",
            f"- uvicorn under test (all workers) {cpu['server_s']:.1f} CPU-s, "
            f"the API serving registrations for it {cpu.get('auth_server_s', 0):.1f} CPU-s, "
            f"MongoDB stand-in {cpu['mongo_s']:.1f} CPU-s, locust {cpu['locust_s']:.1f} CPU-s, "
            f"everything else on the machine {cpu['other_s']:.1f} CPU-s",
            f"- per request: server {cpu['server_ms_per_req']:.2f} ms CPU, "
            f"stand-in {cpu['mongo_ms_per_req']:.2f} ms CPU",
        ]
    lines += ["", "## Checks", ""]
    lines += [
        f"- **{'PASS' if c.ok else 'FAIL'}** {c.name}" + (f": {c.detail}" if c.detail else "")
        for c in checks
    ]
    lines += ["", "## Facts", "", "```json", json.dumps(facts, indent=1, default=str), "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- main


def main() -> int:
    cfg = Config()
    cfg.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + (f"-{cfg.label}" if cfg.label else "")
    prefix = cfg.results / stamp
    tmp = Path(tempfile.mkdtemp(prefix="loadtest-"))
    admin_password = secrets.token_urlsafe(16)
    facts: dict[str, Any] = {"loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}

    env = {
        **os.environ,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DEBUG": "0",
        "THROTTLE_DISABLED": "1",
        "DATABASE_URL": f"sqlite:///{tmp / 'users.sqlite3'}",
        "MONGODB_DB": f"loadtest_{stamp.replace('-', '_')}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SUPERUSER_PASSWORD": admin_password,
        "PYTHONPATH": str(ROOT),
    }
    if cfg.hashers == "md5":
        env["PASSWORD_HASHERS"] = MD5
    elif cfg.hashers != "default":
        env["PASSWORD_HASHERS"] = cfg.hashers

    with ExitStack() as stack:
        env["MONGODB_URI"], standin = start_mongo(stack, cfg.mongodb_uri)
        print(f"loadtest: MongoDB at {env['MONGODB_URI']} (db {env['MONGODB_DB']})", flush=True)

        manage("migrate", "--noinput", env=env)
        manage(
            "createsuperuser",
            "--noinput",
            "--username",
            ADMIN_USERNAME,
            "--email",
            "loadtest-admin@example.com",
            env=env,
        )
        cohort_file = tmp / "cohort.json"
        if cfg.cohort_users and "AdminUser" in cfg.user_classes:
            cohort_env = {
                **env,
                "LOADTEST_COHORT_USERS": str(cfg.cohort_users),
                "LOADTEST_COHORT_FILE": str(cohort_file),
            }
            manage("shell", "-c", CREATE_COHORT, env=cohort_env)
        else:
            cohort_file.write_text("[]")

        server = UvicornProcess(
            "asgi_app.asgi:application",
            env,
            options=["--workers", str(cfg.workers), "--log-level", "warning"],
            log_path=tmp / "server.log",
        )
        base = server.url
        stack.callback(server.stop, timeout=20)
        server.start(ready_path="/readyz", timeout=60)
        hot, capped, assign_courses = create_courses(
            base, admin_password, cfg.catalogue, cfg.capacity
        )
        print(
            f"loadtest: server {base} ({cfg.workers} workers), hot course {hot}, "
            f"capped course {capped} ({cfg.capacity} seats)",
            flush=True,
        )
        auth_server, target = None, server
        if cfg.target == "reference":
            auth_server, target = (
                server,
                ReferenceProcess(
                    "bench.reference.app:app",
                    env,
                    options=["--workers", str(cfg.workers), "--log-level", "warning"],
                    log_path=tmp / "reference.log",
                ),
            )
            stack.callback(target.stop, timeout=20)
            target.start(ready_path="/api/courses/", timeout=60)  # 401 once it is up
            print(f"loadtest: target bench/reference at {target.url}", flush=True)

        ledger_path = tmp / "ledger.json"
        locust_env = {
            **env,
            "LOADTEST_HOT_COURSE": hot,
            "LOADTEST_CAPPED_COURSE": capped,
            "LOADTEST_COURSES": ",".join(assign_courses),
            "LOADTEST_ADMIN_USERNAME": ADMIN_USERNAME,
            "LOADTEST_ADMIN_PASSWORD": admin_password,
            "LOADTEST_COHORT_FILE": str(cohort_file),
            "LOADTEST_LEDGER": str(ledger_path),
            "LOADTEST_AUTH_HOST": base if auth_server is not None else "",
        }
        for key in ("SECRET_KEY", "DJANGO_SUPERUSER_PASSWORD"):
            locust_env.pop(key)
        command = [
            str(Path(sys.executable).parent / "locust"),
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "-u",
            str(cfg.users),
            "-r",
            f"{cfg.rate:g}",
            "-t",
            cfg.duration,
            "--stop-timeout",
            "30",
            "--csv",
            str(prefix),
            "--host",
            target.url,
            "--only-summary",
            "--loglevel",
            "WARNING",
            *cfg.user_classes,
        ]
        print("loadtest: " + " ".join(command[1:]), flush=True)
        busy0, total0 = machine_busy_seconds()
        server0, mongo0 = tree_cpu(target.pid), tree_cpu(standin.pid if standin else None)
        auth0 = tree_cpu(auth_server.pid) if auth_server else 0.0
        children0 = children_cpu()
        started = time.monotonic()
        locust = subprocess.Popen(command, cwd=ROOT, env=locust_env)  # noqa: S603
        locust_rc = locust.wait()
        wall = time.monotonic() - started
        locust_cpu = children_cpu() - children0  # locust is the only child reaped meanwhile
        server_cpu = tree_cpu(target.pid) - server0
        auth_cpu = tree_cpu(auth_server.pid) - auth0 if auth_server else 0.0
        mongo_cpu = tree_cpu(standin.pid if standin else None) - mongo0
        busy1, total1 = machine_busy_seconds()
        facts["locust_exit_status"] = locust_rc
        facts["target"] = cfg.target
        waitlist_rows = None
        if "LifecycleUser" in cfg.user_classes:
            waitlist_rows = read_waitlist(base, admin_password, capped)
        target.stop(timeout=20)
        server.stop(timeout=20)

        stats = read_stats(prefix)
        aggregated = next((r for r in stats if r["Name"] == "Aggregated"), None)
        requests = int(aggregated["Request Count"]) if aggregated else 0
        busy = busy1 - busy0
        facts["cpu"] = {
            "wall_s": wall,
            "machine_busy_s": busy,
            "machine_total_s": total1 - total0,
            "server_s": server_cpu,
            "mongo_s": mongo_cpu,
            "locust_s": locust_cpu,
            "auth_server_s": auth_cpu,
            "other_s": max(busy - server_cpu - auth_cpu - mongo_cpu - locust_cpu, 0.0),
            "server_ms_per_req": 1000 * server_cpu / max(requests, 1),
            "mongo_ms_per_req": 1000 * mongo_cpu / max(requests, 1),
        }
        ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
        facts["steady_state"] = steady_state(prefix, cfg.users)
        facts["client_counters"] = ledger.get("counters", {})
        checks = check_locust(prefix, stats)
        invariant_checks, mongo_facts = check_invariants(
            env["MONGODB_URI"],
            env["MONGODB_DB"],
            ledger,
            int(env.get("COURSE_EMBEDDED_MEMBERS") or 1000),  # the service's default
            waitlist_rows,
        )
        checks += invariant_checks
        facts.update(mongo_facts)
        logs = [tmp / "server.log", *([tmp / "reference.log"] if auth_server else [])]
        server_errors = [
            line
            for log in logs
            for line in log.read_text(errors="replace").splitlines()
            if '"level":"ERROR"' in line or "Traceback" in line
        ]
        checks.append(
            Check(
                "no errors in the server log",
                not server_errors,
                " | ".join(server_errors[:3])[:600],
            )
        )

    summary = summary_markdown(cfg, stamp, stats, checks, facts)
    Path(f"{prefix}_summary.md").write_text(summary)
    ok = all(c.ok for c in checks)
    if not ok:
        (cfg.results / f"{stamp}_server.log").write_bytes((tmp / "server.log").read_bytes())
    print()
    print(summary)
    print(f"loadtest: {'PASS' if ok else 'FAIL'} (results: {prefix}_*)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
