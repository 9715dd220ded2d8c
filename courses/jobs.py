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

Retention: every document of a job carries one `expires_at`, the job's creation +
JOB_RETENTION_DAYS, and a TTL index deletes it then (courses/job_repository.py). A job is
read as absent once past it, before the TTL monitor gets to it, as an unknown job is.

docs/scaling.md 4.7 has the measurements and the sizing.
"""

import asyncio
import csv
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from common.errors import Conflict, DomainError, InvalidInput, NotFound
from courses import assignment, job_queue, membership, repository
from courses import job_repository as jobs
from courses.job_repository import AssignmentJob, ChunkInput
from courses.serializers import csv_columns, csv_row

logger = logging.getLogger("courses.jobs")

JOB_NOT_FOUND = "Assignment job not found."
# The report statuses of assignment.AssignmentReport, zero at the start.
SUMMARY_KEYS = ("requested", *assignment.STATUSES, "duplicates_in_request")
# How many chunks job_create stores per MongoDB command while reading its input.
_STORE_BATCH = 4


class JobFinished(Conflict):
    code = "job_finished"
    default_detail = "The job has finished; only a queued or running job can be cancelled."


class NotConfirmable(Conflict):
    code = "job_not_confirmable"
    default_detail = "Only a finished dry run can be confirmed."


PREVIEW_EXPIRED = (
    "This dry run's stored input has expired (jobs are kept {days} days): upload the file again."
)


class ChunkBusy(Exception):
    """Another worker holds the chunk's lease; try again after `retry_in` seconds."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"chunk leased for {retry_in:.1f} s more")
        self.retry_in = retry_in


# --- input -----------------------------------------------------------------------------
#
# A job takes assign-multiple's bodies (API.md): JSON with one identifier list (validated
# by courses.job_serializers with assign-multiple's fields) or a CSV with its columns and
# row rules (courses.serializers.csv_columns / csv_row), read here as a stream. Either
# becomes an async iterator of ChunkInput; identifiers are resolved by the worker, chunk
# by chunk, so creating a job costs the parsing and the chunk writes only.


def _chunked(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def list_chunks(
    values: list[int] | list[str], kind: str = assignment.USER_ID
) -> AsyncIterator[ChunkInput]:
    """A validated JSON identifier list (one kind), chunk by chunk."""
    for chunk in _chunked(values, settings.JOB_CHUNK_SIZE):
        yield ChunkInput(identifiers=chunk, kinds=kind)


class CsvInput:
    """A CSV body read line by line from a binary file (Django spools a large body to
    disk; the console passes an uploaded file), JOB_CHUNK_SIZE rows at a time: memory
    holds one chunk, never the body. The header and rows follow assign-multiple's rules
    (an identifier column, `user_id`, `username` or `email`, optionally `due_at`; other
    columns ignored; blank lines skipped). Any problem is an InvalidInput naming the line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.line = 0
        self._lines = self._decoded(stream)
        self._rows = csv.reader(self._lines, strict=True)
        self._columns: tuple[list[tuple[str, int]], int | None] | None = None
        self._count = 0

    def _decoded(self, stream: IO[bytes]) -> Iterator[str]:
        for raw in iter(stream.readline, b""):
            self.line += 1
            try:
                text = raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"CSV line {self.line} is not UTF-8.") from None
            yield text

    def _header(self) -> tuple[list[tuple[str, int]], int | None]:
        try:
            header = next(self._rows)
        except StopIteration:
            raise InvalidInput(
                "The CSV is empty: a header row naming user_id, username or email is required."
            ) from None
        try:
            return csv_columns(header)
        except ValueError as exc:
            raise InvalidInput(f"CSV line {self.line}: {exc}") from None

    def read_chunk(self, size: int) -> ChunkInput | None:
        """Up to `size` more rows; None at the end."""
        try:
            if self._columns is None:
                self._columns = self._header()
            identifiers, due_column = self._columns
            values: list[int | str] = []
            kinds: list[str] = []
            due_ats: list[datetime | None] = []
            for row in self._rows:
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                try:
                    item = csv_row(row, identifiers, due_column)
                except ValueError as exc:
                    raise InvalidInput(f"CSV line {self.line}: {exc}") from None
                values.append(item.value)  # as sent: the results' "user"
                kinds.append(item.kind)
                due_ats.append(item.due_at)
                self._count += 1
                if self._count > settings.JOB_MAX_USERS:
                    raise InvalidInput(f"At most {settings.JOB_MAX_USERS} users per job.")
                if len(values) == size:
                    break
        except csv.Error as exc:
            raise InvalidInput(f"CSV line {self.line} cannot be parsed: {exc}.") from None
        if not values:
            return None
        return ChunkInput(
            identifiers=values,
            kinds=kinds[0] if len(identifiers) == 1 else kinds,
            due_ats=due_ats if any(due_ats) else None,
        )


async def csv_chunks(stream: IO[bytes]) -> AsyncIterator[ChunkInput]:
    """The rows of a CSV body, chunk by chunk; parsing (file reads) runs off the loop."""
    reader = CsvInput(stream)
    read = sync_to_async(reader.read_chunk, thread_sensitive=False)
    while chunk := await read(settings.JOB_CHUNK_SIZE):
        yield chunk


# --- the API's side ----------------------------------------------------------------------


async def job_create(
    *,
    course_id: str,
    admin_id: int,
    chunks: AsyncIterator[ChunkInput],
    job_id: str | None = None,
    due_at: datetime | None = None,
    override_capacity: bool = False,
    dry_run: bool = False,
    with_identifiers: bool = False,
    preview_job_id: str | None = None,
) -> tuple[AssignmentJob, bool]:
    """Store the input and the job, and queue its chunks; returns (job, created).

    `chunks` come from `list_chunks` or `csv_chunks`. `due_at` applies to every user whose
    row names no deadline (a CSV's per-row deadlines travel with its chunks);
    `override_capacity` and `dry_run` are assign-multiple's; `with_identifiers`: results
    carry "user" (every input but JSON `user_ids`). A dry-run job computes each chunk's
    report and writes no enrollment; its chunks run one after the other (each is queued
    when the one before it is done), so each sees the seats the earlier ones would take.

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
            await _enqueue(existing)
        return existing, False

    created_at = repository.now()
    # Known before the first chunk is stored: all of the job's documents share it.
    expires_at = created_at + retention()
    total = count = 0
    kinds: set[str] = set()
    pending: list[ChunkInput] = []
    try:
        async for chunk in chunks:
            if isinstance(chunk, list):  # a plain list of user ids (the v1 callers)
                chunk = ChunkInput(identifiers=chunk, kinds=assignment.USER_ID)
            kinds.update([chunk.kinds] if isinstance(chunk.kinds, str) else chunk.kinds)
            pending.append(chunk)
            total += len(chunk.identifiers)
            if len(pending) == _STORE_BATCH:
                await jobs.chunks_insert(job_id, count, pending, expires_at=expires_at)
                count += len(pending)
                pending = []
        if pending:
            await jobs.chunks_insert(job_id, count, pending, expires_at=expires_at)
            count += len(pending)
        if total == 0:
            raise InvalidInput("The input names no user.")
    except BaseException:
        if count:
            await jobs.chunks_delete(job_id)
        raise

    job = AssignmentJob(
        id=job_id,
        course_id=course_id,
        admin_id=admin_id,
        identifier=kinds.pop() if len(kinds) == 1 else "mixed",
        status=jobs.QUEUED,
        total=total,
        chunks=count,
        processed=0,
        summary=dict.fromkeys(SUMMARY_KEYS, 0),
        created_at=created_at,
        due_at=due_at,
        override_capacity=override_capacity,
        dry_run=dry_run,
        with_identifiers=with_identifiers,
        preview_job_id=preview_job_id,
        expires_at=expires_at,
    )
    if not await jobs.job_insert(job):  # a concurrent retry of the same key got there first
        return await job_get(job_id=job_id), False
    try:
        await _enqueue(job)
    except DomainError as exc:
        # Nothing will run it: say so on the job, and answer the queue's 503.
        await jobs.job_end(job_id, status=jobs.FAILED, moment=repository.now(), error=exc.detail)
        raise
    logger.info(
        "assignment job queued",
        extra={
            "job_id": job_id,
            "course_id": course_id,
            "total": total,
            "chunks": count,
            "identifier": job.identifier,
            "dry_run": dry_run,
        },
    )
    return job, True


async def _enqueue(job: AssignmentJob) -> None:
    # A dry run's chunks go one at a time (job_chunk_run queues the next).
    if job.dry_run:
        await job_queue.enqueue_chunk(job.id, 0)
    else:
        await job_queue.enqueue_chunks(job.id, job.chunks)


async def job_create_from_csv(
    *,
    course_id: str,
    admin_id: int,
    upload: Any,
    dry_run: bool = False,
    override_capacity: bool = False,
    job_id: str | None = None,
    due_at: datetime | None = None,
) -> AssignmentJob:
    """Create a job from an uploaded CSV file (the web console): a Django UploadedFile or
    any binary stream with `readline`, read line by line like an API CSV body. `due_at`
    (a future time) is the deadline of the rows with no `due_at` of their own (no such
    column, or an empty cell). Raises InvalidInput (400) naming the bad line or the past
    due_at, NotFound / Conflict for the course, and ServiceUnavailable when the queue is
    down, like the API."""
    _check_future(due_at)
    job, _ = await job_create(
        course_id=course_id,
        admin_id=admin_id,
        chunks=csv_chunks(upload),
        job_id=job_id,
        due_at=due_at,
        override_capacity=override_capacity,
        dry_run=dry_run,
        with_identifiers=True,
    )
    return job


def _check_future(due_at: datetime | None) -> None:
    # As FutureDateTimeField says it (assign-multiple's due_at).
    if due_at is not None and due_at <= repository.now():
        raise InvalidInput("due_at: Must be in the future.", field="due_at")


async def job_confirm(*, job_id: str, admin_id: int) -> AssignmentJob:
    """Run a finished dry run for real: a new job from the dry run's stored input (no new
    upload), with its options (due_at, override_capacity), by `admin_id`. Once per dry
    run: the dry run is marked with the new job's id by one atomic update before the new
    job is created (a concurrent or repeated confirmation is refused), and unmarked if
    the creation fails, so it can be tried again. Raises NotConfirmable (409) for a job
    that is not a dry run, has not succeeded, or was confirmed already; InvalidInput if
    its due_at has passed meanwhile; NotFound / Conflict for the course."""
    preview = await job_get(job_id=job_id)
    _check_confirmable(preview)
    _check_future(preview.due_at)
    new_id = repository.new_id()
    if await jobs.job_confirm_claim(job_id, new_id) is None:
        _check_confirmable(await job_get(job_id=job_id))  # says why
        raise NotConfirmable  # pragma: no cover - changed back in between
    try:
        job, _ = await job_create(
            course_id=preview.course_id,
            admin_id=admin_id,
            chunks=_whole_input(preview),
            job_id=new_id,
            due_at=preview.due_at,
            override_capacity=preview.override_capacity,
            with_identifiers=preview.with_identifiers,
            preview_job_id=job_id,
        )
    except BaseException:
        await asyncio.shield(jobs.job_confirm_release(job_id, new_id))
        raise
    logger.info("assignment dry run confirmed", extra={"job_id": new_id, "dry_run_id": job_id})
    return job


async def _whole_input(preview: AssignmentJob) -> AsyncIterator[ChunkInput]:
    """A dry run's stored input, refused (409) unless all of it is still there: the TTL
    monitor deletes a job's documents one by one, so near its expiry some chunks may be
    gone while the job document is not. Raised before the new job is stored (job_create
    deletes the chunks it copied)."""
    count = total = 0
    async for chunk in jobs.chunks_read(preview.id):
        count += 1
        total += len(chunk.identifiers)
        yield chunk
    if (count, total) != (preview.chunks, preview.total):
        raise NotConfirmable(PREVIEW_EXPIRED.format(days=settings.JOB_RETENTION_DAYS))


def _check_confirmable(job: AssignmentJob) -> None:
    if not job.dry_run:
        raise NotConfirmable("This job is not a dry run: it has assigned its users already.")
    if job.confirmed_job_id is not None:
        raise NotConfirmable("This dry run has been confirmed already.")
    if job.status in jobs.ACTIVE:
        raise NotConfirmable("The dry run has not finished yet: confirm it once it has.")
    if job.status != jobs.SUCCEEDED:
        raise NotConfirmable(
            f"The dry run {job.status}: it cannot be confirmed; upload the file again."
        )


async def job_get(*, job_id: str) -> AssignmentJob:
    """The job; 404 when unknown or past its retention (deleted, or about to be)."""
    job = await jobs.job_get(job_id)
    if job is None or expired(job):
        raise NotFound(JOB_NOT_FOUND)
    return job


def retention() -> timedelta:
    return timedelta(days=settings.JOB_RETENTION_DAYS)


def job_expires_at(job: AssignmentJob) -> datetime:
    """When the job's documents are deleted. A job stored before retention existed has no
    `expires_at`: its creation + the retention, as `manage.py backfill_job_expiry` sets,
    so whatever its worker still writes expires with it."""
    return job.expires_at or job.created_at + retention()


def expired(job: AssignmentJob) -> bool:
    return job.expires_at is not None and job.expires_at <= repository.now()


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
    results: list[dict[str, Any]]  # as assign-multiple renders them
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
    results: list[dict[str, Any]] = []
    next_cursor = None
    for number, rows in docs:
        start = offset if number == chunk else 0
        take = rows[start : start + limit - len(results)]
        results.extend(take)
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


def _requested(job: AssignmentJob, chunk: ChunkInput) -> list[assignment.Requested]:
    kinds = repeat(chunk.kinds) if isinstance(chunk.kinds, str) else chunk.kinds
    # A row's own deadline, else the job's (a CSV row with an empty due_at cell).
    due_ats = (
        repeat(job.due_at)
        if chunk.due_ats is None
        else [job.due_at if d is None else d for d in chunk.due_ats]
    )
    # `repeat` is endless: the identifiers set the length.
    return [
        assignment.Requested(kind, value, due_at)
        for value, kind, due_at in zip(chunk.identifiers, kinds, due_ats, strict=False)
    ]


async def job_chunk_run(*, job_id: str, chunk: int) -> str:
    """Run one chunk of a job; returns what happened (for the log and the tests):
    `done`, `skipped` (job ended, or chunk done already) or `failed` (the job failed).
    Raises ChunkBusy while another worker holds it, ServiceUnavailable when a backing
    service is down (the queue retries both later)."""
    job = await jobs.job_get(job_id)
    if job is None or job.status not in jobs.ACTIVE or expired(job):
        return "skipped"
    moment = repository.now()
    op = membership.new_op(bulk=True)
    claim = await jobs.chunk_claim(
        job_id, chunk, op=op, moment=moment, lease_until=moment + chunk_lease()
    )
    if claim is None:
        state = await jobs.chunk_state(job_id, chunk)
        if state is None or state[0] or state[1] is None:
            if state is not None and state[0]:
                # Done, but its run may have died before queueing the next (a dry run).
                await _enqueue_next(job, chunk)
            return "skipped"
        raise ChunkBusy(max((state[1] - repository.now()).total_seconds(), 1.0))
    if job.dry_run and await jobs.job_counted(job_id, chunk):
        # A dry chunk counted before a crash: running it again would see its own seats
        # as taken by earlier chunks. Its results are stored; finish what it left.
        await _chunk_finish(job, chunk)
        return "done"
    started = time.monotonic()
    await jobs.job_start(job_id, moment)
    try:
        report = await assignment.assignment_bulk_create(
            course_id=job.course_id,
            items=_requested(job, claim.input),
            admin_id=job.admin_id,
            due_at=job.due_at,
            override_capacity=job.override_capacity,
            dry_run=job.dry_run,
            with_identifiers=job.with_identifiers,
            op=op,
            own_ops=frozenset(claim.earlier_ops),
            store=False,
            # A user another chunk named first is a duplicate here (across the whole job,
            # as within one request); identities are compared after resolution.
            claim=lambda identities: jobs.users_claim(
                job_id,
                chunk,
                identities,
                rerun=bool(claim.earlier_ops),
                # The job's own: a claim must not expire before the chunks it guards.
                expires_at=job_expires_at(job),
            ),
            # Sequential dry chunks: the seats the earlier ones would take.
            seats_taken=job.summary.get(assignment.ENROLLED, 0) if job.dry_run else 0,
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
    await jobs.results_put(job_id, chunk, report.results, expires_at=job_expires_at(job))
    await jobs.job_count_chunk(job_id, chunk, report.summary)
    finished = await _chunk_finish(job, chunk)
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
            "dry_run": job.dry_run,
            "job_finished": finished,
        },
    )
    return "done"


async def _chunk_finish(job: AssignmentJob, chunk: int) -> bool:
    """Mark a counted chunk done, end the job if it was the last (whether this call did),
    queue a dry run's next chunk."""
    await jobs.chunk_done(job.id, chunk)
    finished = await jobs.job_complete_if_counted(job.id, job.chunks, repository.now())
    if not finished:
        await _enqueue_next(job, chunk)
    return finished


async def _enqueue_next(job: AssignmentJob, chunk: int) -> None:
    if job.dry_run and chunk + 1 < job.chunks:
        await job_queue.enqueue_chunk(job.id, chunk + 1)


async def job_fail(*, job_id: str, error: str) -> None:
    """The queue gave up on a chunk (retries exhausted): the job fails with `error`."""
    await jobs.job_end(job_id, status=jobs.FAILED, moment=repository.now(), error=error)


async def _release_quietly(job_id: str, chunk: int) -> None:
    """Let a retry take the chunk at once; if MongoDB is what failed, the lease expires."""
    try:
        await asyncio.shield(jobs.chunk_release(job_id, chunk))
    except DomainError:
        pass


async def jobs_backfill_expiry() -> tuple[int, int]:
    """Give the documents stored before retention existed an `expires_at` (a TTL index
    never deletes a document without one): each job's and its documents', its creation +
    JOB_RETENTION_DAYS (a job older than that is deleted by the next TTL pass); then the
    chunks, results and claims of no stored job (a creation that crashed before storing the
    job), now + JOB_RETENTION_DAYS. Idempotent. Returns (jobs, orphan documents) changed."""
    changed = 0
    async for job_id, created_at in jobs.jobs_without_expiry():
        await jobs.job_set_expiry(job_id, created_at + retention())
        changed += 1
    orphans = await jobs.orphans_set_expiry(repository.now() + retention())
    return changed, orphans
