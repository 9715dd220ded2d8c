"""Putting assignment-job chunks on the queue: arq on Redis (JOB_QUEUE_URL, JOB_QUEUE_NAME).

One queue task per chunk, with the task id `<job id>:<chunk>`: arq refuses a second task of
an id it holds, so queueing a job's chunks again (an Idempotency-Key retry) adds nothing.
The worker side is courses/job_worker.py.
"""

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from django.conf import settings
from redis.exceptions import RedisError

from common.errors import ServiceUnavailable

TASK = "assignment_job_chunk"
QUEUE_UNAVAILABLE = "The job queue is unavailable, try again shortly."

_pool: ArqRedis | None = None
_pool_key: tuple[Any, str] | None = None


def redis_settings() -> RedisSettings:
    base = RedisSettings.from_dsn(settings.JOB_QUEUE_URL)
    # Fail fast (the API answers 503) rather than arq's default of five tries a second apart.
    base.conn_timeout = 2
    base.conn_retries = 1
    base.conn_retry_delay = 0
    return base


async def queue_pool() -> ArqRedis:
    """One connection pool per event loop and queue URL (management commands and tests
    run new loops)."""
    global _pool, _pool_key
    key = (asyncio.get_running_loop(), settings.JOB_QUEUE_URL)
    if _pool is None or _pool_key != key:
        _pool = await create_pool(redis_settings(), default_queue_name=settings.JOB_QUEUE_NAME)
        _pool_key = key
    return _pool


def task_id(job_id: str, chunk: int) -> str:
    return f"{job_id}:{chunk}"


async def enqueue_chunks(job_id: str, chunks: int, *, first: int = 0) -> None:
    """Queue chunks `first` .. `chunks - 1` of a job (every chunk by default);
    ServiceUnavailable when Redis does not answer."""
    try:
        pool = await queue_pool()
        for chunk in range(first, chunks):
            await pool.enqueue_job(
                TASK,
                job_id,
                chunk,
                _job_id=task_id(job_id, chunk),
                _queue_name=settings.JOB_QUEUE_NAME,
            )
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(QUEUE_UNAVAILABLE) from exc


async def enqueue_chunk(job_id: str, chunk: int) -> None:
    """Queue one chunk (a dry-run job's next). One queued or run already is not queued
    again (the task id)."""
    await enqueue_chunks(job_id, chunk + 1, first=chunk)


async def close_queue_pool() -> None:
    global _pool, _pool_key
    pool, _pool, _pool_key = _pool, None, None
    if pool is not None:
        await pool.aclose()
