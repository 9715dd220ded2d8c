"""`make bench-jobs`: assignment-job throughput on this machine, with the stand-in.

Starts its own stack in a temporary directory (SQLite, the MongoDB stand-in, one API
process, `--workers` assignment workers), creates the users with `bulk_create` (unusable
passwords), submits one CSV job per `--sizes` entry on a fresh course and times it:
upload (until the 202), run (202 to `succeeded`) and chunks per second. Prints one JSON
line per job. `--identifier email` (or `username`) names the users by that column instead
of `user_id` (resolved in SQL by the workers). Example: `python -m bench.jobs --sizes
100000 1000000 --workers 2 --identifier user_id email`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

from devstack.stack import UvicornProcess, WorkerProcess, run_manage, start_mongo

_SEED = """
import json, sys, time
import django
django.setup()
from accounts.models import User
from accounts.tokens import tokens_for_user
from bench.jobs_users import create_users
started = time.monotonic()
ids = create_users(int(sys.argv[1]), prefix="cohort")
seconds = time.monotonic() - started
admin = User.objects.create_superuser("bench-admin", "bench-admin@example.com", None)
print(json.dumps({"ids": ids, "seconds": seconds, "access": tokens_for_user(admin)["access"]}))
"""


def _seed(env: dict[str, str], users: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _SEED, str(users)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _csv(ids: list[int], identifier: str) -> bytes:
    if identifier == "user_id":
        return ("user_id\n" + "\n".join(map(str, ids)) + "\n").encode()
    # bench.jobs_users names user i `cohort<i>` (email `cohort<i>@example.com`), ids in order.
    suffix = "@example.com" if identifier == "email" else ""
    rows = (f"cohort{i}{suffix}" for i in range(len(ids)))
    return (identifier + "\n" + "\n".join(rows) + "\n").encode()


def _job(api: httpx.Client, headers: dict, ids: list[int], identifier: str = "user_id") -> dict:
    course = api.post(
        "/api/courses/",
        json={
            "course_title": f"Bench {len(ids)}",
            "course_description": "",
            "display_price": {"amount": "0.00", "currency": "USD"},
        },
        headers=headers,
    ).json()
    body = _csv(ids, identifier)
    started = time.monotonic()
    created = api.post(
        f"/api/courses/{course['id']}/assignment-jobs/",
        content=body,
        headers={**headers, "Content-Type": "text/csv"},
    )
    created.raise_for_status()
    accepted = time.monotonic()
    location = created.headers["Location"]
    while True:
        polled = api.get(location, headers=headers)
        if polled.status_code != 200:
            raise RuntimeError(f"poll answered {polled.status_code}: {polled.text[:300]}")
        job = polled.json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.25)
    finished = time.monotonic()
    run = finished - accepted
    return {
        "users": len(ids),
        "identifier": identifier,
        "body_mb": round(len(body) / 1e6, 1),
        "status": job["status"],
        "enrolled": job["summary"]["enrolled"],
        "upload_s": round(accepted - started, 2),
        "run_s": round(run, 2),
        "total_s": round(finished - started, 2),
        "users_per_s": round(len(ids) / run),
    }


def _chunk_ms(log: Path) -> dict:
    """Median and max milliseconds per chunk, from the workers' JSON log lines."""
    times = sorted(
        line["ms"]
        for line in map(json.loads, filter(None, log.read_text().splitlines()))
        if line.get("message") == "assignment job chunk"
    )
    if not times:
        return {}
    return {"chunks": len(times), "median": times[len(times) // 2], "max": times[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=1, help="chunks per worker at once")
    parser.add_argument(
        "--identifier",
        nargs="+",
        choices=["user_id", "username", "email"],
        default=["user_id"],
        help="the CSV's identifier column; several: one job per size and identifier",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp, ExitStack() as stack:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "asgi_app.settings",
            "DEBUG": "1",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DATABASE_URL": f"sqlite:///{Path(tmp) / 'db.sqlite3'}",
            "LOG_LEVEL": "INFO",
            "JOB_QUEUE_NAME": f"bench-jobs-{uuid.uuid4().hex[:8]}",
            "JOB_CHUNK_SIZE": str(args.chunk_size),
            "JOB_WORKER_CONCURRENCY": str(args.concurrency),
            "JWT_ACCESS_MINUTES": "120",
        }
        env["MONGODB_URI"], _ = start_mongo(stack, os.environ.get("MONGODB_URI"))
        run_manage("migrate", "--noinput", env=env, stdout=subprocess.DEVNULL)
        run_manage("ensure_indexes", env=env, stdout=subprocess.DEVNULL)
        seeded = _seed(env, max(args.sizes))
        print(
            json.dumps(
                {"created_users": len(seeded["ids"]), "seconds": round(seeded["seconds"], 1)}
            )
        )
        server = stack.enter_context(UvicornProcess("asgi_app.asgi:application", env))
        for _ in range(args.workers):
            stack.enter_context(WorkerProcess(env, log_path=Path(tmp) / "workers.log"))
        headers = {"Authorization": f"Bearer {seeded['access']}"}
        with httpx.Client(base_url=server.url, timeout=600) as api:
            for size, identifier in [(n, i) for n in args.sizes for i in args.identifier]:
                result = _job(api, headers, seeded["ids"][:size], identifier)
                print(
                    json.dumps(
                        {
                            **result,
                            "workers": args.workers,
                            "concurrency": args.concurrency,
                            "chunk": args.chunk_size,
                        }
                    )
                )
        print(json.dumps({"chunk_ms": _chunk_ms(Path(tmp) / "workers.log")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
