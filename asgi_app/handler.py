"""Django's ASGI handler with a bounded set of request threads, used only when needed.

Django runs every request in its own `ThreadSensitiveContext`, so that the request's sync
work (signal receivers, the ORM, sync middleware) shares one thread no other request uses.
Profiled under `make bench`, that design cost a plain async view most of its CPU, and it
has no bound: 300 concurrent requests that touch SQL made 307 threads, each with its own
database connection, until PostgreSQL refused connections.

This handler keeps Django's isolation (one request, one thread at a time) but:

- a request is bound to a thread only when it submits its first sync task, and keeps that
  thread until it ends (its database connection lives there);
- the threads come from `RequestThreads`, at most `SQL_POOL_SIZE` per process, reused and
  uniquely named `request-<n>`; a request that finds them all bound waits in line, and
  after `SQL_POOL_TIMEOUT` seconds its sync task fails with `ServiceUnavailable` (503,
  `Retry-After`) instead of opening one more connection;
- a request that never leaves the event loop (an enrollment: JWT claims and MongoDB only)
  takes no thread, and no thread round trip at all.

Django's request signals, as this handler sends them (receivers must be sync, as Django's
own are):

- `request_started` (sender `PooledThreadASGIHandler`, `scope=`): only for a request that
  gets a thread, on that thread, right before its first sync task; never for a request that
  stays on the event loop or gives up waiting for a thread. Django sends it for every
  request, before the request object exists; its database receiver
  (`close_old_connections`) only matters where a connection can live, which is the thread.
- `request_finished`: sent by `response.close()` once per response, on the request's thread
  if it has one (where `close_old_connections` closes or returns its connection), otherwise
  on the event-loop thread, which holds no connection. If the response task was cancelled
  (client gone), sent with `asend` as Django does, so sync receivers go to the request's
  thread.
- `got_request_exception`: unchanged (Django sends it where the exception is handled).

`handle_on` is Django 5.2's `ASGIHandler.handle` with three lines changed (marked), and
`__call__` replaces Django's; `DJANGO_HANDLE_SHA256` records the Django source this fork was
reviewed against (tests/api/test_handler.py fails when Django's changes).
"""

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

from common.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

# sha256 of the source of Django's ASGIHandler.__call__ and ASGIHandler.handle (Django 5.2)
# that `PooledThreadASGIHandler` was written from; see tests/api/test_handler.py.
DJANGO_HANDLE_SHA256 = "05b877cf417b0e5ea2767f2e5ad374d35b8fa26898f1970119629b2445e83b41"


class RequestThreads:
    """At most `size` single-thread executors, each bound to one request at a time.

    Called on the event-loop thread (`loop.run_in_executor` and the handler); the lock only
    guards against a caller on another thread.
    """

    def __init__(self, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError("at least one request thread is needed")
        self.size = size
        self.timeout = timeout
        self._created = 0
        self._idle: list[ThreadPoolExecutor] = []
        self._waiting: deque[RequestThread] = deque()
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Threads bound to a request right now."""
        return self._created - len(self._idle)

    @property
    def waiting(self) -> int:
        """Requests in line for a thread."""
        return len(self._waiting)

    def bind(self, request: "RequestThread") -> bool:
        """Give `request` a thread now (True), or queue it for the next free one (False)."""
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
            elif self._created < self.size:
                self._created += 1
                worker = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"request-{self._created}"
                )
            else:
                self._waiting.append(request)
                return False
        request.bound(worker)
        return True

    def give_up(self, request: "RequestThread") -> bool:
        """Take `request` out of the line; False if it was not waiting."""
        with self._lock:
            try:
                self._waiting.remove(request)
            except ValueError:
                return False
            return True

    def release(self, request: "RequestThread") -> None:
        """The request ended: its thread goes to the first request in line, or idles."""
        self.give_up(request)
        worker, request.worker = request.worker, None
        if worker is None:
            return
        with self._lock:
            waiter = self._waiting.popleft() if self._waiting else None
            if waiter is None:
                self._idle.append(worker)
                return
        waiter.bound(worker)


def _copy_outcome(source: Future, target: Future) -> None:
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class RequestThread(Executor):
    """One request's executor for `ThreadSensitiveContext`: a thread from `RequestThreads`,
    bound on the request's first sync task, after `request_started` has run there."""

    def __init__(self, threads: RequestThreads) -> None:
        self.threads = threads
        self.worker: ThreadPoolExecutor | None = None
        self._scope: dict | None = None
        self._queued: list[tuple[Future, tuple]] = []
        self._timer: asyncio.TimerHandle | None = None

    @property
    def used(self) -> bool:
        return self.worker is not None

    def begin(self, scope: dict) -> None:
        self._scope = scope

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self.worker is None and not self._queued and not self.threads.bind(self):
            self._timer = asyncio.get_running_loop().call_later(self.threads.timeout, self._expire)
        if self.worker is not None:
            return self.worker.submit(fn, *args, **kwargs)
        future: Future = Future()
        self._queued.append((future, (fn, args, kwargs)))
        return future

    def bound(self, worker: ThreadPoolExecutor) -> None:
        """Called by `RequestThreads` when this request gets `worker`."""
        self.worker = worker
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._scope is not None:
            scope, self._scope = self._scope, None
            worker.submit(_send_request_started, scope)  # runs first, on this thread
        queued, self._queued = self._queued, []
        for future, (fn, args, kwargs) in queued:
            if future.set_running_or_notify_cancel():
                worker.submit(fn, *args, **kwargs).add_done_callback(
                    lambda done, future=future: _copy_outcome(done, future)
                )

    def _expire(self) -> None:
        self._timer = None
        if not self.threads.give_up(self):
            return
        logger.warning(
            "no request thread free for %.1f s (%d busy): answering 503",
            self.threads.timeout,
            self.threads.busy,
        )
        queued, self._queued = self._queued, []
        for future, _ in queued:
            if future.set_running_or_notify_cancel():
                future.set_exception(ServiceUnavailable("The service is busy, try again shortly."))


def _send_request_started(scope: dict) -> None:
    try:
        signals.request_started.send(sender=PooledThreadASGIHandler, scope=scope)
    except Exception:
        logger.exception("a request_started receiver failed")


class PooledThreadASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads(settings.SQL_POOL_SIZE, settings.SQL_POOL_TIMEOUT)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = RequestThread(self.threads)
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle_on(thread, scope, receive, send)
        finally:
            self.threads.release(thread)

    @staticmethod
    async def _close(response, thread: RequestThread) -> None:
        if thread.used:
            await sync_to_async(response.close)()  # request_finished where the connection is
        else:
            response.close()

    async def handle_on(self, thread: RequestThread, scope, receive, send) -> None:
        # Receive the HTTP request body as a stream object.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # Request is complete and can be served.
        set_script_prefix(get_script_prefix(scope))
        thread.begin(scope)  # CHANGED: request_started is sent lazily, see the docstring
        # Get the request and check for basic issues.
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await self._close(error_response, thread)  # CHANGED
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                # Client disconnected during send_response (ignore exception).
                pass

            return response

        # Try to catch a disconnect while getting response.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Now wait on both tasks (they may have both finished by now).
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    # Ignore client disconnects.
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                # Allow views to handle cancellation.
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    # Task re-raised the CancelledError as expected.
                    pass

        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await self._close(response, thread)  # CHANGED

        body_file.close()
