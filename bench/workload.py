"""The benchmark's data, created through the API, and the request streams of each rung."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import Pool, RequestSource, encode_request
from bench.stack import Seeded

HOST = "127.0.0.1"


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class Api:
    """Setup calls to one API server as the benchmark admin (status checked)."""

    def __init__(self, pool: Pool, admin_token: str) -> None:
        self.pool = pool
        self.admin_token = admin_token

    def post(self, path: str, payload: Any) -> bytes:
        return encode_request("POST", path, host=HOST, token=self.admin_token, body=_json(payload))

    async def call(self, raw: bytes, expect: int) -> Any:
        status, body = await self.pool.one(raw)
        if status != expect:
            raise RuntimeError(f"setup call answered {status}: {body[:300]!r}")
        return json.loads(body)

    async def create_courses(self, prefix: str, count: int) -> list[str]:
        ids = []
        for i in range(count):
            course = await self.call(self.post("/api/courses/", _course_body(f"{prefix} {i}")), 201)
            ids.append(course["id"])
        return ids

    async def assign_multiple(self, course_id: str, user_ids: list[int]) -> dict[str, Any]:
        raw = self.post(f"/api/courses/{course_id}/assign-multiple/", {"user_ids": user_ids})
        return await self.call(raw, 200)


def _course_body(title: str) -> dict[str, Any]:
    return {
        "course_title": title,
        "course_description": "A benchmark course with a description of realistic length. " * 3,
        "display_price": {"amount": "49.99", "currency": "USD"},
    }


@dataclass
class PairStream:
    """Fresh (course, user) pairs for first-time enrolls, shared by every enroll window.

    Pair n is course n % C and user n // C, so the courses fill evenly and no pair repeats
    across windows, rounds, drivers or the open-loop run. With `fresh`, pair n also carries
    its own access token (the user's `fresh[n % C]`), never sent before.
    """

    courses: list[str]
    users: list[dict[str, Any]]
    fresh: bool = False
    next_pair: int = 0
    _cache: dict[int, bytes] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return len(self.courses) * len(self.users)

    def source(self) -> tuple[RequestSource, int]:
        """A request source starting at the next unused pair, and how many are left."""
        base = self.next_pair

        def make(number: int) -> bytes:
            pair = base + number
            course = self.courses[pair % len(self.courses)]
            user = self.users[pair // len(self.courses)]
            token = user["fresh"][pair % len(self.courses)] if self.fresh else user["access"]
            return enroll_request(course, token)

        return make, self.capacity - base

    def consumed(self, count: int) -> None:
        self.next_pair += count


def enroll_request(course_id: str, token: str, cookie: str | None = None) -> bytes:
    path = f"/api/courses/{course_id}/enroll/"
    return encode_request("POST", path, host=HOST, token=token, cookie=cookie)


# A browser's CSRF cookie beside the session's (any 32 characters: the API never reads it).
_CSRF_COOKIE = "csrftoken=" + "k" * 32


def console_cookies(user: dict[str, Any]) -> str:
    """The cookies a browser signed in to /console/ as `user` sends with every request to
    the host: its session and CSRF cookies."""
    return f"sessionid={user['session']}; {_CSRF_COOKIE}"


def cycling(requests: list[bytes]) -> RequestSource:
    size = len(requests)
    return lambda number: requests[number % size]


@dataclass
class Workload:
    """Everything the rungs send; built once against the pymongo API server."""

    seeded: Seeded
    list_courses: list[str]
    enroll_pairs: PairStream
    repeat_requests: list[bytes]
    fresh_pairs: PairStream  # the reference comparison's first-time enrolls
    repeat_pairs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def user_token(self, index: int = 0) -> str:
        return self.seeded.users[index % len(self.seeded.users)]["access"]

    def get(self, path: str, index: int = 0, *, cookies: bool = False) -> bytes:
        user = self.seeded.users[index % len(self.seeded.users)]
        cookie = console_cookies(user) if cookies else None
        return encode_request("GET", path, host=HOST, token=user["access"], cookie=cookie)

    def plain(self) -> RequestSource:
        return cycling([encode_request("GET", "/bench/plain", host=HOST)])

    def auth_noop(self) -> RequestSource:
        return cycling([self.get("/bench/auth-noop", i) for i in range(64)])

    def course_list(self, *, cookies: bool = False) -> RequestSource:
        return cycling([self.get("/api/courses/", i, cookies=cookies) for i in range(64)])

    def course_detail(self) -> RequestSource:
        courses = self.list_courses
        return cycling([self.get(f"/api/courses/{c}/", i) for i, c in enumerate(courses)])

    def enroll_repeat(self, *, cookies: bool = False) -> RequestSource:
        if not cookies:
            return cycling(self.repeat_requests)
        return cycling(
            [
                enroll_request(course, user["access"], console_cookies(user))
                for course, user in self.repeat_pairs
            ]
        )


async def build(
    pool: Pool,
    seeded: Seeded,
    *,
    list_courses: int,
    enroll_courses: int,
    repeat_courses: int,
    repeat_users: int,
    compare_courses: int,
) -> Workload:
    api = Api(pool, seeded.admin_token)
    listed = await api.create_courses("Catalogue course", list_courses)
    targets = await api.create_courses("Enroll target", enroll_courses)
    repeats = await api.create_courses("Repeat target", repeat_courses)
    compared = await api.create_courses("Compare target", compare_courses)
    fresh_users = [user for user in seeded.users if "fresh" in user]
    assert all(len(user["fresh"]) >= compare_courses for user in fresh_users)
    users = seeded.users[:repeat_users]
    for course in repeats:  # everyone already enrolled: every request is a repeat
        report = await api.assign_multiple(course, [u["id"] for u in users])
        assert report["summary"]["enrolled"] == len(users), report["summary"]
    repeat_pairs = [(course, user) for user in users for course in repeats]
    repeat_requests = [enroll_request(course, user["access"]) for course, user in repeat_pairs]
    return Workload(
        seeded=seeded,
        list_courses=listed,
        enroll_pairs=PairStream(targets, seeded.users),
        repeat_requests=repeat_requests,
        fresh_pairs=PairStream(compared, fresh_users, fresh=True),
        repeat_pairs=repeat_pairs,
    )
