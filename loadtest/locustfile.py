"""Load scenarios for the enrollment API (see docs/scaling.md and `make loadtest`).

Three user classes, each tagged with its scenario name, so either selects a scenario:

    locust -f loadtest/locustfile.py SpikeUser ...          # by user class
    locust -f loadtest/locustfile.py --tags spike ...        # by tag (other classes are dropped)

- ``spike`` (SpikeUser): registers once, then enrolls in ONE hot course; the first enroll
  must be 201, every repeat 200 with the same enrollment. 503s and connection errors are
  retried with backoff, the way a real client would; each retried attempt is recorded under
  its own name (``... [retried: 503]``) so it is visible but not counted as a failure.
- ``browse`` (BrowseUser): registers once, then lists course pages, opens course details,
  lists its own enrollments and now and then enrolls in a random catalogue course.
- ``admin`` (AdminUser, one instance): logs in as an admin and bulk-assigns cohorts of 500
  user ids (pre-created users, users registered during this run, two unknown ids and one
  duplicate) via ``assign-multiple``, checking that the report adds up.
- ``lifecycle`` (LifecycleUser): registers once, then churns on ONE capped course
  (``LOADTEST_CAPPED_COURSE``): enrolls (201 ``active`` or ``waitlisted`` the first time,
  200 with the same enrollment after), withdraws (``DELETE .../enroll/``: 200
  ``withdrawn``) and enrolls again, so the course fills up, a waitlist forms and freed
  seats promote from it while requests keep arriving.

Environment (set by ``loadtest/run.py``):

    LOADTEST_HOT_COURSE       id of the hot course (required by spike)
    LOADTEST_CAPPED_COURSE    id of the course with a capacity (required by lifecycle)
    LOADTEST_COURSES          comma-separated course ids the admin assigns cohorts to
                              (default: the hot course)
    LOADTEST_ADMIN_USERNAME / LOADTEST_ADMIN_PASSWORD    admin credentials (admin scenario)
    LOADTEST_COHORT_FILE      JSON list of pre-created user ids for the admin's cohorts
    LOADTEST_LEDGER           where to write, at the end, every (course, user) enrollment
                              the API confirmed, for the runner's cross-check with MongoDB
    LOADTEST_WAIT_MIN / LOADTEST_WAIT_MAX   think time of spike users, seconds (0.1 / 0.5)
    LOADTEST_AUTH_HOST        where users register and log in, when the host under test
                              has no accounts (the bench/reference comparison)
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, between, events, tag, task
from locust.exception import StopUser

HOT_COURSE = os.environ.get("LOADTEST_HOT_COURSE", "")
CAPPED_COURSE = os.environ.get("LOADTEST_CAPPED_COURSE", "")
COURSES = [c for c in os.environ.get("LOADTEST_COURSES", "").split(",") if c] or (
    [HOT_COURSE] if HOT_COURSE else []
)
ADMIN_USERNAME = os.environ.get("LOADTEST_ADMIN_USERNAME", "admin")
ADMIN_PASSWORD = os.environ.get("LOADTEST_ADMIN_PASSWORD", "")
COHORT_FILE = os.environ.get("LOADTEST_COHORT_FILE", "")
LEDGER = os.environ.get("LOADTEST_LEDGER", "")
AUTH_HOST = os.environ.get("LOADTEST_AUTH_HOST", "")  # "" = the host under test
COHORT_SIZE = 500
UNKNOWN_IDS_PER_COHORT = 2
# Think time of the users hammering one course (spike, lifecycle).
HOT_WAIT = between(
    float(os.environ.get("LOADTEST_WAIT_MIN", "0.1")),
    float(os.environ.get("LOADTEST_WAIT_MAX", "0.5")),
)
RETRY_STATUSES = {0, 502, 503, 504}  # 0: connection error (FastHttpUser)
MAX_ATTEMPTS = 8
# One per run. Letters that never occur in usernames (`lt<hex>u<n>_<hex>`): with hex digits
# in both, Django's similarity validator refused about 1 registration in 100.
PASSWORD = "Pw-" + "".join(secrets.choice("ghijkmnopqrsvwxyz") for _ in range(12)) + "-9Q!"
RUN_TAG = uuid.uuid4().hex[:6]
_serial = itertools.count(1)

# Shared by every user of this (single) locust process.
registered_user_ids: list[int] = []
# course id -> user ids the API confirmed as enrolled (201/200 enroll, or an assignment
# report saying enrolled/already_enrolled), plus counters for the summary.
confirmed: dict[str, set[int]] = defaultdict(set)
counters: dict[str, int] = defaultdict(int)
problems: list[str] = []


def _problem(message: str) -> None:
    counters["problems"] += 1
    if len(problems) < 50:
        problems.append(message)


def _select_by_tags(environment: Any) -> None:
    """`--tags spike` keeps only the user classes of that scenario (others would be idle)."""
    options = environment.parsed_options
    tags = set(getattr(options, "tags", None) or [])
    if not tags:
        return
    chosen = [c for c in environment.user_classes if getattr(c, "scenario", None) in tags]
    if chosen:
        environment.user_classes[:] = chosen


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    _select_by_tags(environment)


@events.test_stop.add_listener
def _write_ledger(environment: Any, **_: Any) -> None:
    if not LEDGER:
        return
    with open(LEDGER, "w") as fh:
        json.dump(
            {
                "hot_course": HOT_COURSE,
                "capped_course": CAPPED_COURSE,
                "confirmed": {c: sorted(ids) for c, ids in confirmed.items()},
                "counters": dict(counters),
                "problems": problems,
            },
            fh,
            indent=1,
        )


class ApiUser(FastHttpUser):
    abstract = True
    scenario = ""
    network_timeout = 30.0
    connection_timeout = 10.0
    # No Accept-Encoding games: the API answers small JSON bodies.
    token = ""
    user_id = 0

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(
        self,
        method: str,
        path: str,
        name: str,
        expect: set[int],
        check: Callable[..., str | None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One logical request, retried on 503/connection errors with jittered backoff.

        Returns the parsed JSON body of the final response, or None if it failed (already
        recorded as a locust failure). `check(body)` returns an error message or None.
        """
        delay = 0.05
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self.client.request(
                method, path, name=name, catch_response=True, **kwargs
            ) as resp:
                status = resp.status_code or 0
                if status in RETRY_STATUSES and attempt < MAX_ATTEMPTS:
                    resp.request_meta["name"] = f"{name} [retried: {status or 'conn error'}]"
                    resp.success()
                    counters["retries"] += 1
                else:
                    return self._finish(resp, status, expect, check, attempt)
            gevent.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
        return None

    @staticmethod
    def _finish(resp: Any, status: int, expect: set[int], check: Any, attempt: int) -> Any:
        if status not in expect:
            resp.failure(f"status {status}, expected {sorted(expect)}: {(resp.text or '')[:200]}")
            return None
        try:
            body = resp.json() if resp.text else None
        except ValueError:
            resp.failure("response is not JSON")
            return None
        error = check(body, status=status, attempt=attempt) if check else None
        if error:
            resp.failure(error)
            _problem(error)
            return None
        resp.success()
        return body

    def register(self) -> None:
        n = next(_serial)
        username = f"lt{RUN_TAG}u{n}_{uuid.uuid4().hex[:6]}"
        body = self.call(
            "POST",
            AUTH_HOST + "/api/auth/register/",
            "POST /api/auth/register/",
            {201},
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        if body is None:
            # A retried register may have succeeded the first time: log in instead.
            body = self.call(
                "POST",
                AUTH_HOST + "/api/auth/login/",
                "POST /api/auth/login/",
                {200},
                json={"username": username, "password": PASSWORD},
            )
            if body is None:
                raise StopUser
            self.token = body["access"]
            me = self.call(
                "GET", AUTH_HOST + "/api/auth/me/", "GET /api/auth/me/", {200}, headers=self.auth()
            )
            if me is None:
                raise StopUser
            self.user_id = me["id"]
        else:
            self.token = body["access"]
            self.user_id = body["user"]["id"]
        self.username = username
        registered_user_ids.append(self.user_id)
        counters["registered"] += 1

    def enroll(self, course_id: str, name: str) -> dict | None:
        """Enroll; checks the 201-then-200-same-enrollment contract per (user, course)."""
        known = self.enrollments.get(course_id)

        def check(body: Any, status: int, attempt: int) -> str | None:
            if not isinstance(body, dict):
                return "enroll: body is not an object"
            if body.get("course_id") != course_id or body.get("user_id") != self.user_id:
                return f"enroll: wrong enrollment {body}"
            source = body.get("source")
            if body.get("status") != "active" or source not in ("self", "admin"):
                return f"enroll: unexpected status/source {body}"
            if known is not None and body.get("id") != known:
                return f"enroll: repeat returned a different enrollment {body['id']} != {known}"
            if status == 201 and source != "self":
                return f"enroll: 201 for an enrollment with source {source}"
            # A first enroll answers 200 only if an admin assigned us meanwhile, or if this
            # is a retry whose earlier attempt had inserted the enrollment.
            if known is None and status == 200 and source == "self" and attempt == 1:
                return "enroll: first self-enroll answered 200, expected 201"
            return None

        body = self.call(
            "POST",
            f"/api/courses/{course_id}/enroll/",
            name,
            {200} if known else {200, 201},
            check,
            headers=self.auth(),
        )
        if body is None:
            return None
        if known is None:
            self.enrollments[course_id] = body["id"]
            confirmed[course_id].add(self.user_id)
            counters["enrollments_first"] += 1
            if body.get("source") == "admin":
                counters["enrollments_first_found_admin_assigned"] += 1
        else:
            counters["enrollments_repeat"] += 1
        return body

    def on_start(self) -> None:
        self.enrollments: dict[str, str] = {}


class SpikeUser(ApiUser):
    """Register once, then enroll in the hot course (and keep re-enrolling: 200, same id)."""

    scenario = "spike"
    weight = 10
    wait_time = HOT_WAIT

    def on_start(self) -> None:
        super().on_start()
        if not HOT_COURSE:
            raise RuntimeError("LOADTEST_HOT_COURSE is not set")
        self.register()

    @tag("spike")
    @task
    def enroll_hot_course(self) -> None:
        first = HOT_COURSE not in self.enrollments
        name = (
            "POST /api/courses/[hot]/enroll/ (first)"
            if first
            else ("POST /api/courses/[hot]/enroll/ (repeat)")
        )
        self.enroll(HOT_COURSE, name)


class BrowseUser(ApiUser):
    """Read the catalogue and one's own enrollments; occasionally enroll somewhere."""

    scenario = "browse"
    weight = 4
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        super().on_start()
        self.course_ids: list[str] = []
        self.course_count = 0
        self.register()

    @tag("browse")
    @task(4)
    def list_courses(self) -> None:
        offset = random.randrange(0, max(self.course_count, 1) // 20 + 1) * 20
        body = self.call(
            "GET",
            f"/api/courses/?limit=20&offset={offset}",
            "GET /api/courses/?limit=20&offset=[n]",
            {200},
            headers=self.auth(),
        )
        if body:
            self.course_count = body["count"]
            self.course_ids = [c["id"] for c in body["results"]] or self.course_ids
            if any("enrolled_users" in c for c in body["results"]):
                _problem("course list exposes enrolled_users to a regular user")

    @tag("browse")
    @task(4)
    def course_detail(self) -> None:
        if not self.course_ids:
            self.list_courses()
            return
        course_id = random.choice(self.course_ids)

        def check(body: Any, **_: Any) -> str | None:
            if body.get("id") != course_id:
                return "detail: wrong course"
            if "enrolled_users" in body:
                return "detail: enrolled_users shown to a regular user"
            return None

        self.call(
            "GET",
            f"/api/courses/{course_id}/",
            "GET /api/courses/[id]/",
            {200},
            check,
            headers=self.auth(),
        )

    @tag("browse")
    @task(2)
    def my_enrollments(self) -> None:
        expected = len(self.enrollments)

        def check(body: Any, **_: Any) -> str | None:
            # >=: the admin may also have assigned this user to courses.
            if body.get("count", -1) < expected:
                return f"my enrollments: count {body.get('count')} < {expected}"
            if any(row.get("user_id") != self.user_id for row in body["results"]):
                return "my enrollments: someone else's enrollment"
            return None

        self.call(
            "GET",
            "/api/enrollments/",
            "GET /api/enrollments/",
            {200},
            check,
            headers=self.auth(),
        )

    @tag("browse")
    @task(1)
    def enroll_somewhere(self) -> None:
        if self.course_ids:
            self.enroll(random.choice(self.course_ids), "POST /api/courses/[id]/enroll/")


class AdminUser(ApiUser):
    """One admin bulk-assigning cohorts of 500 user ids, round-robin over the courses."""

    scenario = "admin"
    fixed_count = 1
    wait_time = between(1.0, 2.0)

    def on_start(self) -> None:
        super().on_start()
        body = self.call(
            "POST",
            "/api/auth/login/",
            "POST /api/auth/login/ (admin)",
            {200},
            json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
        )
        if body is None or not COURSES:
            raise StopUser
        self.token = body["access"]
        self.token_at = time.monotonic()
        self.refresh = body["refresh"]
        pool: list[int] = []
        if COHORT_FILE:
            with open(COHORT_FILE) as fh:
                pool = json.load(fh)
        self.pool = pool
        self.round = 0

    def cohort(self) -> tuple[list[int], int, int]:
        """(ids, distinct known ids, unknown ids): 500 ids with 2 unknown and 1 duplicate."""
        fresh = random.sample(registered_user_ids, min(50, len(registered_user_ids)))
        size = COHORT_SIZE - UNKNOWN_IDS_PER_COHORT - 1 - len(fresh)
        start = (self.round * size) % max(len(self.pool), 1)
        base = (self.pool[start:] + self.pool[:start])[:size]
        known = list(dict.fromkeys(base + fresh))
        unknown = [10_000_000 + self.round * 10 + i for i in range(UNKNOWN_IDS_PER_COHORT)]
        ids = known + unknown
        ids.append(ids[0])  # one duplicate
        random.shuffle(ids)
        return ids, len(known), len(unknown)

    @tag("admin")
    @task
    def assign_cohort(self) -> None:
        if time.monotonic() - self.token_at > 600:  # access tokens live 15 minutes
            self.on_start()
        if not self.pool and not registered_user_ids:
            return
        course_id = COURSES[self.round % len(COURSES)]
        ids, known, unknown = self.cohort()
        self.round += 1
        distinct = list(dict.fromkeys(ids))

        def check(body: Any, **_: Any) -> str | None:
            s = body.get("summary", {})
            results = body.get("results", [])
            statuses = ("enrolled", "already_enrolled", "not_found", "inactive")
            counted = {k: sum(1 for r in results if r["status"] == k) for k in statuses}
            errors = []
            if body.get("course_id") != course_id:
                errors.append("course_id")
            if s.get("requested") != len(ids):
                errors.append(f"requested {s.get('requested')} != {len(ids)}")
            if s.get("duplicates_in_request") != len(ids) - len(distinct):
                errors.append(f"duplicates_in_request {s.get('duplicates_in_request')}")
            if [r["user_id"] for r in results] != distinct:
                errors.append("results are not the distinct ids in request order")
            if any(s.get(k) != counted[k] for k in statuses):
                errors.append(f"summary {s} != counted results {counted}")
            if sum(s.get(k, 0) for k in statuses) + s.get("duplicates_in_request", 0) != len(ids):
                errors.append("summary does not add up to requested")
            if s.get("not_found") != unknown or s.get("inactive") != 0:
                errors.append(f"not_found {s.get('not_found')} != {unknown} or inactive")
            if s.get("enrolled", 0) + s.get("already_enrolled", 0) != known:
                errors.append(f"enrolled + already_enrolled != {known}")
            if not isinstance(body.get("enrollers"), int) or body["enrollers"] < s.get(
                "enrolled", 0
            ):
                errors.append(f"enrollers {body.get('enrollers')}")
            return f"assign-multiple report: {'; '.join(errors)}" if errors else None

        body = self.call(
            "POST",
            f"/api/courses/{course_id}/assign-multiple/",
            "POST /api/courses/[id]/assign-multiple/ (500 ids)",
            {200},
            check,
            json={"user_ids": ids},
            headers=self.auth(),
        )
        if body:
            for row in body["results"]:
                if row["status"] in ("enrolled", "already_enrolled"):
                    confirmed[course_id].add(row["user_id"])
            counters["cohorts"] += 1
            counters["cohort_enrolled"] += body["summary"]["enrolled"]
            counters["cohort_already_enrolled"] += body["summary"]["already_enrolled"]


class LifecycleUser(ApiUser):
    """Enroll, withdraw and enroll again on the capped course, while it is full."""

    scenario = "lifecycle"
    weight = 10
    wait_time = HOT_WAIT
    STATUSES = ("active", "waitlisted")

    def on_start(self) -> None:
        super().on_start()
        if not CAPPED_COURSE:
            raise RuntimeError("LOADTEST_CAPPED_COURSE is not set")
        self.enrollment_id = ""
        self.withdrawn = True  # nothing yet: the next task enrolls
        self.register()

    def _check_enroll(self, body: Any, status: int, attempt: int) -> str | None:
        if not isinstance(body, dict):
            return "lifecycle enroll: body is not an object"
        if body.get("course_id") != CAPPED_COURSE or body.get("user_id") != self.user_id:
            return f"lifecycle enroll: wrong enrollment {body}"
        state = body.get("status")
        if state not in self.STATUSES:
            return f"lifecycle enroll: status {state!r}, expected active or waitlisted"
        position = body.get("waitlist_position")
        if (state == "waitlisted") != (isinstance(position, int) and position >= 1):
            return f"lifecycle enroll: {state} with waitlist_position {position!r}"
        if self.enrollment_id and body.get("id") != self.enrollment_id:
            return f"lifecycle enroll: a new enrollment {body['id']} != {self.enrollment_id}"
        if not self.enrollment_id and status == 200 and attempt == 1:
            return "lifecycle enroll: first enroll answered 200, expected 201"
        return None

    def _check_withdraw(self, body: Any, **_: Any) -> str | None:
        if not isinstance(body, dict) or body.get("id") != self.enrollment_id:
            return f"withdraw: wrong enrollment {body}"
        if body.get("status") != "withdrawn" or not body.get("withdrawn_at"):
            return f"withdraw: status {body.get('status')!r}, withdrawn_at missing"
        if body.get("waitlist_position") is not None:
            return "withdraw: a withdrawn enrollment keeps a waitlist_position"
        return None

    @tag("lifecycle")
    @task(3)
    def enroll_capped(self) -> None:
        again = bool(self.enrollment_id) and self.withdrawn
        kind = "first" if not self.enrollment_id else ("again" if again else "repeat")
        body = self.call(
            "POST",
            f"/api/courses/{CAPPED_COURSE}/enroll/",
            f"POST /api/courses/[capped]/enroll/ ({kind})",
            {200} if self.enrollment_id else {200, 201},
            self._check_enroll,
            headers=self.auth(),
        )
        if body is None:
            return
        if not self.enrollment_id:
            self.enrollment_id = body["id"]
            confirmed[CAPPED_COURSE].add(self.user_id)
        self.withdrawn = False
        counters[f"capped_enroll_{kind}_{body['status']}"] += 1

    @tag("lifecycle")
    @task(2)
    def withdraw_capped(self) -> None:
        if self.withdrawn:
            return self.enroll_capped()
        body = self.call(
            "DELETE",
            f"/api/courses/{CAPPED_COURSE}/enroll/",
            "DELETE /api/courses/[capped]/enroll/",
            {200},
            self._check_withdraw,
            headers=self.auth(),
        )
        if body is not None:
            self.withdrawn = True
            counters["capped_withdrawals"] += 1
        return None
