"""Django's ASGI handler without worker-thread round trips for requests that need none.

Django runs every request in its own `ThreadSensitiveContext`, so that the request's sync
work (signal receivers, the ORM, sync middleware) shares one thread no other request uses.
Profiled under `make bench`, that design cost a plain async view most of its CPU:

- asgiref starts a fresh thread for every context (about 40% of a plain view's CPU);
- every request hops to that thread at least twice, for the `request_started` receivers
  and for `response.close()` (which sends `request_finished`): about 0.1 ms each.

This handler keeps Django's isolation (one request, one thread at a time) but:

- each request borrows a single-thread executor from a free list instead of starting a
  thread, and hands it back;
- `request_started` is sent in the request's thread right before the request's first sync
  task, and only if it has one; `response.close()` runs in that thread only if the request
  used it. A request that never leaves the event loop (an enrollment: JWT claims and
  MongoDB only) makes no thread round trip at all. The database receivers still run where
  the request's connection lives, so connections are closed exactly as in Django.

`handle` is Django 5.2's `ASGIHandler.handle` with those two lines changed (marked).
"""

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

logger = logging.getLogger(__name__)

# Idle request threads kept for reuse; beyond this a burst's extra threads are let go.
MAX_IDLE_THREADS = 64


class RequestThread(ThreadPoolExecutor):
    """The thread of one request at a time, which remembers whether the request used it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self.used = False
        self._pending_scope: dict | None = None

    def begin(self, scope: dict) -> None:
        self.used = False
        self._pending_scope = scope

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._pending_scope is not None:
            scope, self._pending_scope = self._pending_scope, None
            super().submit(_send_request_started, scope)  # runs first, on this thread
        self.used = True
        return super().submit(fn, *args, **kwargs)


def _send_request_started(scope: dict) -> None:
    try:
        signals.request_started.send(sender=PooledThreadASGIHandler, scope=scope)
    except Exception:
        logger.exception("a request_started receiver failed")


class PooledThreadASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._idle: list[RequestThread] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self._idle.pop() if self._idle else RequestThread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle_on(thread, scope, receive, send)
        finally:
            if len(self._idle) < MAX_IDLE_THREADS:
                self._idle.append(thread)
            else:
                thread.shutdown(wait=False)

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
