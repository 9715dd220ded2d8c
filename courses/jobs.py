"""Assignment jobs: cohorts of up to JOB_MAX_USERS users, assigned chunk by chunk by workers.

A job is created by storing its input identifiers in chunks of JOB_CHUNK_SIZE
(`assignment_job_chunks`), then the job document, then one queue task per chunk
(courses/job_queue.py). A worker runs a chunk through the bulk-assignment path
(`assignment.assignment_bulk_create`: one bulk insert and one course update), stores its
results, and adds its counts to the job. Every step is safe to run again:

- A chunk is claimed in MongoDB with a lease before it runs, so two workers never run it
  at once, and a done chunk never runs again.
- The claim records the membership operation id the attempt will use, before anything is
  written. A chunk run again after a crash passes its earlier attempts' ids: users they
  enrolled are reported `enrolled`, and an earlier operation that was never applied is
  retired and its enrollments counted by the new one (docs/scaling.md 4.6, case 4), so
  nobody is counted twice and nobody is missed, without reconcile.
- The job's counts take a chunk's summary once (`counted` ∌ chunk, in the same update).

docs/scaling.md 4.7 has the measurements and the sizing.
"""

import asyncio
import csv
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from common.errors import Conflict, DomainError, InvalidInput, NotFound
from courses import assignment, job_queue, membership, repository
from courses import job_repository as jobs
from courses.job_repository import AssignmentJob

logger = logging.getLogger("courses.jobs")

JOB_NOT_FOUND = "Assignment job not found."
# The report statuses of assignment.AssignmentReport, zero at the start.
SUMMARY_KEYS = ("requested", *assignment.STATUSES, "duplicates_in_request")
# How many chunks job_create stores per MongoDB command while reading its input.
_STORE_BATCH = 4


class JobFinished(Conflict):
    code = "job_finished"
    default_detail = "The job has finished; only a queued or running job can be cancelled."


class ChunkBusy(Exception):
    """Another worker holds the chunk's lease; try again after `retry_in` seconds."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"chunk leased for {retry_in:.1f} s more")
        self.retry_in = retry_in


# --- input -----------------------------------------------------------------------------


def _user_id(value: Any) -> int | None:
    if type(value) is int and 0 < value < 2**63:
        return value
    return None


def json_user_ids(body: Any) -> list[int]:
    """The `user_ids` of a JSON body, validated (400 otherwise)."""
    if not isinstance(body, dict) or set(body) != {"user_ids"}:
        raise InvalidInput('The body must be {"user_ids": [...]}.')
    ids = body["user_ids"]
    if not isinstance(ids, list) or not ids:
        raise InvalidInput("A non-empty list of user ids is required.", field="user_ids")
    if len(ids) > settings.JOB_MAX_USERS:
        raise InvalidInput(f"At most {settings.JOB_MAX_USERS} user ids per job.", field="user_ids")
    for position, value in enumerate(ids):
        if _user_id(value) is None:
            raise InvalidInput(
                f"Item {position}: {value!r} is not a user id (a positive integer).",
                field="user_ids",
            )
    return ids


def _chunked(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class CsvUserIds:
    """The `user_id` column of a CSV body, read line by line from a binary file (Django
    spools a large body to disk), JOB_CHUNK_SIZE ids at a time: memory holds one chunk,
    never the body. Any problem is an InvalidInput naming the line."""

    COLUMN = "user_id"

    def __init__(self, stream: IO[bytes]) -> None:
        self.line = 0
        self._lines = self._decoded(stream)
        self._rows = csv.reader(self._lines, strict=True)
        self._column: int | None = None
        self._count = 0

    def _decoded(self, stream: IO[bytes]) -> Iterator[str]:
        for raw in iter(stream.readline, b""):
            self.line += 1
            try:
                text = raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"CSV line {self.line} is not UTF-8.") from None
            yield text

    def _header(self) -> int:
        try:
            header = next(self._rows)
        except StopIteration:
            raise InvalidInput(
                "The CSV is empty: a header row naming `user_id` is required."
            ) from None
        names = [name.strip() for name in header]
        if self.COLUMN not in names:
            raise InvalidInput(f"The CSV header must name a `{self.COLUMN}` column.")
        return names.index(self.COLUMN)

    def read_chunk(self, size: int) -> list[int]:
        """Up to `size` more ids; an empty list at the end."""
        try:
            if self._column is None:
                self._column = self._header()
            ids: list[int] = []
            for row in self._rows:
                if not row or all(not cell.strip() for cell in row):
                    continue  # blank line
                cell = row[self._column].strip() if self._column < len(row) else ""
                value = int(cell) if cell.isascii() and cell.isdigit() and len(cell) < 19 else None
                if not value:
                    raise InvalidInput(
                        f"CSV line {self.line}: {cell!r} is not a user id (a positive integer)."
                    )
                ids.append(value)
                self._count += 1
                if self._count > settings.JOB_MAX_USERS:
                    raise InvalidInput(f"At most {settings.JOB_MAX_USERS} users per job.")
                if len(ids) == size:
                    break
            return ids
        except csv.Error as exc:
            raise InvalidInput(f"CSV line {self.line} cannot be parsed: {exc}.") from None


async def csv_chunks(stream: IO[bytes]) -> AsyncIterator[list[int]]:
    """The ids of a CSV body, chunk by chunk; parsing (file reads) runs off the loop."""
    reader = CsvUserIds(stream)
    read = sync_to_async(reader.read_chunk, thread_sensitive=False)
    while ids := await read(settings.JOB_CHUNK_SIZE):
        yield ids


async def list_chunks(ids: list[int]) -> AsyncIterator[list[int]]:
    for chunk in _chunked(ids, settings.JOB_CHUNK_SIZE):
        yield chunk


# --- the API's side ----------------------------------------------------------------------


async def job_create(
    *,
    course_id: str,
    admin_id: int,
    chunks: AsyncIterator[list[int]],
    job_id: str | None = None,
) -> tuple[AssignmentJob, bool]:
    """Store the input and the job, and queue its chunks; returns (job, created).

    With a caller-chosen `job_id` (an Idempotency-Key retry) an existing job of that id is
    returned instead (and queued again if it was still queued: the queue drops duplicates).
    Bad input raises InvalidInput before the job exists, and its stored chunks are deleted:
    nothing is left behind.
    """
    admission = await repository.course_admission(course_id, fresh=True)
    assignment.check_admits(admission)
    job_id = job_id or repository.new_id()
    existing = await jobs.job_get(job_id)
    if existing is not None:
        if existing.status == jobs.QUEUED:
            await job_queue.enqueue_chunks(job_id, existing.chunks)
        return existing, False

    total = count = 0
    pending: list[list[int]] = []
    try:
        async for chunk in chunks:
            pending.append(chunk)
            total += len(chunk)
            if len(pending) == _STORE_BATCH:
                await jobs.chunks_insert(job_id, count, pending)
                count += len(pending)
                pending = []
        if pending:
            await jobs.chunks_insert(job_id, count, pending)
            count += len(pending)
        if total == 0:
            raise InvalidInput("The input names no user.", field="user_ids")
    except BaseException:
        if count:
            await jobs.chunks_delete(job_id)
        raise

    job = AssignmentJob(
        id=job_id,
        course_id=course_id,
        admin_id=admin_id,
        identifier="user_id",
        status=jobs.QUEUED,
        total=total,
        chunks=count,
        processed=0,
        summary=dict.fromkeys(SUMMARY_KEYS, 0),
        created_at=repository.now(),
    )
    if not await jobs.job_insert(job):  # a concurrent retry of the same key got there first
        return await job_get(job_id=job_id), False
    try:
        await job_queue.enqueue_chunks(job_id, count)
    except DomainError as exc:
        # Nothing will run it: say so on the job, and answer the queue's 503.
        await jobs.job_end(job_id, status=jobs.FAILED, moment=repository.now(), error=exc.detail)
        raise
    logger.info(
        "assignment job queued",
        extra={"job_id": job_id, "course_id": course_id, "total": total, "chunks": count},
    )
    return job, True


async def job_get(*, job_id: str) -> AssignmentJob:
    job = await jobs.job_get(job_id)
    if job is None:
        raise NotFound(JOB_NOT_FOUND)
    return job


async def job_list(*, course_id: str, limit: int, offset: int) -> tuple[int, list[AssignmentJob]]:
    """(count, one page) of a course's jobs, newest first."""
    return await asyncio.gather(
        jobs.job_count(course_id), jobs.job_page(course_id, limit=limit, offset=offset)
    )


async def job_cancel(*, job_id: str) -> AssignmentJob:
    """Cancel a queued or running job: the chunk running now finishes and is counted, no
    later chunk starts. Cancelling a cancelled job answers it unchanged."""
    ended = await jobs.job_end(job_id, status=jobs.CANCELLED, moment=repository.now())
    if ended is not None:
        logger.info("assignment job cancelled", extra={"job_id": job_id})
        return ended
    job = await job_get(job_id=job_id)
    if job.status != jobs.CANCELLED:
        raise JobFinished
    return job


def job_eta_seconds(job: AssignmentJob) -> float | None:
    """Seconds left at the rate so far, while running and once something was processed."""
    if job.status != jobs.RUNNING or not job.processed or job.started_at is None:
        return None
    elapsed = (repository.now() - job.started_at).total_seconds()
    return round(elapsed / job.processed * (job.total - job.processed), 1)


@dataclass(frozen=True)
class ResultsPage:
    results: list[tuple[Any, str]]
    next_cursor: str | None


def parse_cursor(raw: str | None) -> tuple[int, int]:
    """A results cursor is `<chunk>.<offset>`; 400 for anything else."""
    if raw is None:
        return 0, 0
    chunk, _, offset = raw.partition(".")
    if not (chunk.isdigit() and offset.isdigit() and len(raw) <= 20):
        raise InvalidInput("Invalid cursor.", field="cursor")
    return int(chunk), int(offset)


async def job_results_page(*, job_id: str, cursor: tuple[int, int], limit: int) -> ResultsPage:
    """Per-user results in input order, of the chunks processed so far."""
    job = await job_get(job_id=job_id)
    chunk, offset = cursor
    docs = await jobs.results_from(
        job_id, chunk, chunks=(offset + limit) // settings.JOB_CHUNK_SIZE + 2
    )
    results: list[tuple[Any, str]] = []
    next_cursor = None
    for number, rows in docs:
        start = offset if number == chunk else 0
        take = rows[start : start + limit - len(results)]
        results.extend((uid, status) for uid, status in take)
        if len(results) == limit:
            end = start + len(take)
            next_cursor = f"{number}.{end}" if end < len(rows) else f"{number + 1}.0"
            break
    if next_cursor is not None and next_cursor.endswith(".0"):
        # Only point further when something is (or will be) there.
        number = int(next_cursor.split(".")[0])
        if number >= job.chunks:
            next_cursor = None
    return ResultsPage(results=results, next_cursor=next_cursor)


# --- the worker's side -------------------------------------------------------------------


def chunk_lease() -> timedelta:
    # As long as the queue keeps a started task to itself (arq: its timeout + 10 s).
    return timedelta(seconds=settings.JOB_CHUNK_TIMEOUT_SECONDS + 15)


async def job_chunk_run(*, job_id: str, chunk: int) -> str:
    """Run one chunk of a job; returns what happened (for the log and the tests):
    `done`, `skipped` (job ended, or chunk done already) or `failed` (the job failed).
    Raises ChunkBusy while another worker holds it, ServiceUnavailable when a backing
    service is down (the queue retries both later)."""
    job = await jobs.job_get(job_id)
    if job is None or job.status not in jobs.ACTIVE:
        return "skipped"
    moment = repository.now()
    op = membership.new_op(bulk=True)
    claim = await jobs.chunk_claim(
        job_id, chunk, op=op, moment=moment, lease_until=moment + chunk_lease()
    )
    if claim is None:
        state = await jobs.chunk_state(job_id, chunk)
        if state is None or state[0] or state[1] is None:
            return "skipped"
        raise ChunkBusy(max((state[1] - repository.now()).total_seconds(), 1.0))
    started = time.monotonic()
    await jobs.job_start(job_id, moment)
    try:
        report = await assignment.assignment_bulk_create(
            course_id=job.course_id,
            items=[assignment.Requested(assignment.USER_ID, uid) for uid in claim.identifiers],
            admin_id=job.admin_id,
            with_identifiers=False,
            op=op,
            own_ops=frozenset(claim.earlier_ops),
            store=False,
        )
    except (NotFound, Conflict) as exc:
        # The course is gone or archived: no later chunk can succeed either.
        await jobs.job_end(job_id, status=jobs.FAILED, moment=repository.now(), error=exc.detail)
        await jobs.chunk_release(job_id, chunk)
        logger.warning(
            "assignment job failed", extra={"job_id": job_id, "chunk": chunk, "error": exc.detail}
        )
        return "failed"
    except BaseException:
        await _release_quietly(job_id, chunk)
        raise
    await jobs.results_put(
        job_id, chunk, [(result["user_id"], result["status"]) for result in report.results]
    )
    await jobs.job_count_chunk(job_id, chunk, report.summary)
    await jobs.chunk_done(job_id, chunk)
    finished = await jobs.job_complete_if_counted(job_id, job.chunks, repository.now())
    logger.info(
        "assignment job chunk",
        extra={
            "job_id": job_id,
            "chunk": chunk,
            "chunks": job.chunks,
            "users": len(claim.identifiers),
            "attempt": len(claim.earlier_ops) + 1,
            "ms": round((time.monotonic() - started) * 1000, 1),
            "enrolled": report.summary[assignment.ENROLLED],
            "job_finished": finished,
        },
    )
    return "done"


async def job_fail(*, job_id: str, error: str) -> None:
    """The queue gave up on a chunk (retries exhausted): the job fails with `error`."""
    await jobs.job_end(job_id, status=jobs.FAILED, moment=repository.now(), error=error)


async def _release_quietly(job_id: str, chunk: int) -> None:
    """Let a retry take the chunk at once; if MongoDB is what failed, the lease expires."""
    try:
        await asyncio.shield(jobs.chunk_release(job_id, chunk))
    except DomainError:
        pass
