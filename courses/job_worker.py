"""The assignment-job worker: `python manage.py assignment_worker` runs an arq Worker on
JOB_QUEUE_NAME whose one task runs one chunk (courses.jobs.job_chunk_run).

Retries: a chunk whose worker was killed is taken up again once arq's in-progress mark
expires (JOB_CHUNK_TIMEOUT_SECONDS + 15 s after it started; its MongoDB lease expires with
it). A chunk that finds MongoDB (or SQL) down is retried with exponential backoff (2, 4, 8
... capped at 60 s) up to JOB_MAX_TRIES times, then the job fails with the error. A chunk
that runs past JOB_CHUNK_TIMEOUT_SECONDS is cancelled and retried the same way. On SIGTERM
the worker lets running chunks finish (up to the timeout) before it exits.
"""

import asyncio
import logging
from typing import Any

from arq.worker import Retry, Worker, func
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from common.errors import ServiceUnavailable
from courses import jobs
from courses.job_queue import TASK, close_queue_pool, redis_settings
from mongo.client import close_client

logger = logging.getLogger("courses.jobs")
MAX_BACKOFF_SECONDS = 60
# arq's own timeout sits above ours, so ours (which turns into a retry) fires first.
_ARQ_TIMEOUT_MARGIN = 5


def backoff_seconds(job_try: int) -> int:
    return min(2**job_try, MAX_BACKOFF_SECONDS)


async def assignment_job_chunk(ctx: dict[str, Any], job_id: str, chunk: int) -> str:
    job_try = ctx.get("job_try", 1)
    try:
        await sync_to_async(close_old_connections)()
        async with asyncio.timeout(settings.JOB_CHUNK_TIMEOUT_SECONDS):
            return await jobs.job_chunk_run(job_id=job_id, chunk=chunk)
    except jobs.ChunkBusy as busy:
        raise Retry(defer=busy.retry_in) from None
    except (ServiceUnavailable, TimeoutError) as exc:
        error = getattr(exc, "detail", None) or "the chunk timed out"
        if job_try >= settings.JOB_MAX_TRIES:
            await _fail(job_id, f"Chunk {chunk} gave up after {job_try} tries: {error}")
            raise
        delay = backoff_seconds(job_try)
        logger.warning(
            "assignment job chunk retry",
            extra={
                "job_id": job_id,
                "chunk": chunk,
                "try": job_try,
                "retry_in": delay,
                "error": error,
            },
        )
        raise Retry(defer=delay) from None
    except Exception:
        logger.exception("assignment job chunk crashed", extra={"job_id": job_id, "chunk": chunk})
        await _fail(job_id, f"Chunk {chunk} failed with an internal error.")
        raise


async def _fail(job_id: str, error: str) -> None:
    try:
        await jobs.job_fail(job_id=job_id, error=error)
    except ServiceUnavailable:
        logger.error("could not mark the job failed", extra={"job_id": job_id, "error": error})


async def _shutdown(ctx: dict[str, Any]) -> None:
    await close_client()
    await close_queue_pool()


def build_worker(*, burst: bool = False, handle_signals: bool = True) -> Worker:
    return Worker(
        functions=[
            func(
                assignment_job_chunk,
                name=TASK,
                timeout=settings.JOB_CHUNK_TIMEOUT_SECONDS + _ARQ_TIMEOUT_MARGIN,
                max_tries=settings.JOB_MAX_TRIES,
            )
        ],
        queue_name=settings.JOB_QUEUE_NAME,
        redis_settings=redis_settings(),
        max_jobs=settings.JOB_WORKER_CONCURRENCY,
        on_shutdown=_shutdown,
        burst=burst,
        handle_signals=handle_signals,
        # SIGTERM/SIGINT: stop taking chunks, let running ones finish.
        job_completion_wait=settings.JOB_CHUNK_TIMEOUT_SECONDS,
        keep_result=3600,
        poll_delay=0.2,
    )
