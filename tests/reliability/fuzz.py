"""Fuzz the API from its OpenAPI schema with schemathesis (`make fuzz`).

Starts the MongoDB stand-in, a migrated temporary SQLite database with known users and a
production-like uvicorn server (DEBUG off, throttles off), creates a course through the
API, then runs schemathesis against `/api/schema/` three times: anonymous, as a regular
user and as an admin (tokens from `/api/auth/login/`). Checks: no 5xx, status codes,
content types and bodies conform to the schema. The figures come from the server's own
access log, so they count what the server saw, not what the fuzzer meant to send.

Then probes what the schema cannot express, on raw sockets: heads from 8 KiB to 10 MiB
(431 over 16 KiB, the server serving on), a head and a body that trickle, a connection
that sends nothing (closed after the 3 s timeouts the server gets here). Any 5xx, or a
connection the server leaves open, fails the run.

    python -m tests.reliability.fuzz [--max-examples N] [--seed S] [--json FILE]

Exits non-zero on any schemathesis failure or any 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from standin.process import StandinProcess
from tests.reliability import rawhttp
from tests.reliability.servers import (
    PASSWORD,
    UvicornServer,
    bearer,
    prepare_sqlite,
    server_env,
)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def _login(url: str, username: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/login/", json={"username": username, "password": PASSWORD}, timeout=10
    )
    response.raise_for_status()
    return response.json()["access"]


def _seed_course(url: str, admin_token: str) -> str:
    response = httpx.post(
        f"{url}/api/courses/",
        json={
            "course_title": "Fuzzing 101",
            "course_description": "Seeded so that course-id paths hit a real document.",
            "display_price": {"amount": "9.99", "currency": "EUR"},
        },
        headers=bearer(admin_token),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["id"]


def _access_lines(log: str) -> list[tuple[str, str, int]]:
    seen = []
    for line in log.split("\n"):  # not splitlines(): U+2028 in a logged path is not a line end
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") != "asgi_app.access":
            continue
        # "METHOD path status"; the decoded path may itself contain spaces.
        method, _, rest = entry["message"].partition(" ")
        seen.append((method, rest.rpartition(" ")[0], entry["status"]))
    return seen


def _schemathesis(url: str, *, profile: str, token: str | None, args, env, cwd: str) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/api/schema/",
        "--checks",
        CHECKS,
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--phases",
        args.phases,
        "--request-timeout",
        "15",
        "--workers",
        "1",
        "--no-color",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    print(f"\n== schemathesis as {profile}", flush=True)
    started = time.monotonic()
    # In a temporary directory: schemathesis keeps a `.schemathesis/` store in its cwd.
    done = subprocess.run(command, cwd=cwd, env=env, check=False)  # noqa: S603
    print(f"== {profile}: exit {done.returncode} in {time.monotonic() - started:.0f}s", flush=True)
    return done.returncode


KIB = 1024
PROBE_TIMEOUT = "3"  # the server's head and body timeouts during the fuzz run


def _head_probe(port: int, size: int) -> str:
    with rawhttp.connect(port) as sock:
        for piece in rawhttp.huge_header_request(size):
            if not rawhttp.send_quietly(sock, piece):
                break
        reply = rawhttp.read_response(sock) if size < 16 * KIB else rawhttp.read_until_closed(sock)
    return str(reply.status) if reply.status else "closed"


def _slow_probe(port: int, first_bytes: bytes) -> str:
    with rawhttp.connect(port) as sock:
        sock.sendall(first_bytes)
        reply = rawhttp.read_until_closed(sock)
    if not reply.closed:
        return "left open"
    return str(reply.status) if reply.status else "closed"


def _abuse_probes(port: int) -> dict[str, str]:
    """What each probe got (a status, "closed" or "left open"), and /healthz after it."""
    results = {}
    for size in (8 * KIB, 15 * KIB, 17 * KIB, 64 * KIB, 1024 * KIB, 10 * 1024 * KIB):
        results[f"header {size // KIB} KiB"] = _head_probe(port, size)
    register = (
        b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    results["partial head"] = _slow_probe(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    results["stalled body"] = _slow_probe(port, register)
    results["silent connection"] = _slow_probe(port, b"")
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    results["healthz after the probes"] = str(health.status_code)
    return results


def _probe_failures(results: dict[str, str]) -> list[str]:
    expected = {"header 8 KiB": "200", "header 15 KiB": "200", "healthz after the probes": "200"}
    failures = []
    for name, got in results.items():
        if got.startswith("5") or got == "left open":
            failures.append(f"{name}: {got}")
        elif name in expected and got != expected[name]:
            failures.append(f"{name}: {got}, expected {expected[name]}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=150)
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp, StandinProcess() as standin:
        env = server_env(
            DATABASE_URL=f"sqlite:///{tmp}/fuzz.sqlite3",
            MONGODB_URI=standin.uri,
            MONGODB_DB="fuzz",
            ACCESS_LOG_LEVEL="INFO",
            HTTP_HEADER_TIMEOUT=PROBE_TIMEOUT,
            HTTP_BODY_TIMEOUT=PROBE_TIMEOUT,
            # Jobs the fuzzer creates go to a queue of its own (nobody runs them).
            JOB_QUEUE_NAME=f"fuzz-{os.getpid()}",
        )
        ids = prepare_sqlite(f"{tmp}/fuzz.sqlite3", bulk=20, env=env)
        with UvicornServer(env) as server:
            admin_token = _login(server.url, "staff")
            profiles = {
                "anonymous": None,
                "regular user": _login(server.url, "regular"),
                "admin": admin_token,
            }
            course_id = _seed_course(server.url, admin_token)
            real_users = [ids["regular"], ids["regular2"], ids["inactive"], *ids["bulk"]]
            fuzz_env = {
                **os.environ,
                "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("fuzz_hooks.py")),
                "FUZZ_COURSE_ID": course_id,
                "FUZZ_USER_IDS": ",".join(map(str, real_users)),
            }
            codes = {
                profile: _schemathesis(
                    server.url, profile=profile, token=token, args=args, env=fuzz_env, cwd=tmp
                )
                for profile, token in profiles.items()
            }
            print("\n== header-size and slow-client probes", flush=True)
            probes = _abuse_probes(server.port)
            seen = _access_lines(server.log())
            server_errors = [line for line in seen if line[2] >= 500]
            tracebacks = server.log().count("Traceback")
            schema = httpx.get(
                f"{server.url}/api/schema/", headers={"Accept": "application/json"}, timeout=10
            ).json()
    operations = sum(
        1 for item in schema["paths"].values() for method in item if method in {"get", "post"}
    )
    statuses: dict[int, int] = {}
    for _, _, status in seen:
        statuses[status] = statuses.get(status, 0) + 1
    figures = {
        "operations": operations,
        "profiles": list(codes),
        "requests": len(seen),
        "statuses": dict(sorted(statuses.items())),
        "server_errors_5xx": len(server_errors),
        "tracebacks_in_server_log": tracebacks,
        "schemathesis_exit_codes": codes,
        "probes": probes,
        "seconds": round(time.monotonic() - started),
    }
    print("\n== fuzz figures\n" + json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    for line in server_errors[:20]:
        print("5xx:", *line)
    probe_failures = _probe_failures(probes)
    for line in probe_failures:
        print("probe:", line)
    failed = any(codes.values()) or server_errors or tracebacks or probe_failures
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
