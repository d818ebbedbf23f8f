"""Django's ASGI handler with one reused thread per request for its sync work.

Django runs each ASGI request's sync code (ORM calls, sync middleware, signal receivers) in a
thread-sensitive context: all of it on one thread, so a request keeps one database connection
and its transactions. Stock Django (asgiref 3.13) gives every request a new single-thread
executor: a thread started for the request and a second thread started at its end to join it,
with the event loop waiting on each start (asgiref issue #535). Under load that is a large part
of the per-request cost, and the request's database connection dies with its thread, so every
request also logs in to PgBouncer again (SCRAM, checked one at a time on one core: under a crowd
of clients the logins queue until they time out as 503s; docs/ARCHITECTURE.md).

Here a request borrows a single-thread executor from a pool and gives it back when it ends,
the way a gthread worker reuses its threads: a request's sync calls still share one thread
(asgiref's ThreadSensitiveContext(executor=...)), and that thread's database connection lives on
for DB_CONN_MAX_AGE, checked by CONN_HEALTH_CHECKS before reuse, as under WSGI. A thread serves
one request at a time. The pool holds at most EXECUTORS; a request arriving when all are lent
waits for one, so threads and PgBouncer client connections per worker are bounded too.

WORKER TIMEOUT for sync code (the watchdog below): a request whose thread has been inside one
sync call longer than Gunicorn's timeout is stuck, as surely as a worker whose event loop went
silent. Its thread's stack is logged as worker_abort logs stacks, the abort counted, the client
answered a JSON 504 at once, its executor never lent again, and the worker drains and is
replaced (runtime/workers.py); the other requests in flight finish.
"""

import asyncio
import logging
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from time import monotonic
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

from runtime import workers

# Requests in flight per worker, each with its own thread and up to two PgBouncer client
# connections (primary and replica). 128 x 2 workers / 0.3 s (a fan-out request's concurrent
# upstream calls) = 853 requests a second, above what two cores serve (docs/BENCHMARKS.md,
# scenario 1). PGBOUNCER_MAX_CLIENT_CONN is sized from it: compose (2,000) for 3 web replicas
# (1,536), Kubernetes for the web autoscaler's maximum (tests/k8s/test_k8s_workloads.py).
EXECUTORS = 128
_SWAP = threading.Lock()
log = logging.getLogger(__name__)


class RequestExecutor(ThreadPoolExecutor):
    """A single-thread executor that knows since when its thread runs the current call."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="django-request")
        self.busy_since: float | None = None
        self.thread_id: int | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def timed() -> Any:
            self.thread_id = threading.get_ident()
            self.busy_since = monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy_since = None

        return super().submit(timed)


class ExecutorPool:
    """Single-thread executors, lent one per request, most recently returned first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.created = 0
        self._idle: list[RequestExecutor] = []
        self._waiters: deque[asyncio.Future[RequestExecutor]] = deque()

    async def borrow(self) -> RequestExecutor:
        if self._idle:
            return self._idle.pop()  # the warmest thread: its connection is the least likely stale
        if self.created < self.size:
            self.created += 1
            return RequestExecutor()
        waiter: asyncio.Future[RequestExecutor] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back(waiter.result())  # lent just as the request went away
            raise

    def give_back(self, executor: RequestExecutor) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(executor)
                return
        self._idle.append(executor)

    def close(self) -> int:
        """Closes the idle threads' database connections, each on its own thread, and ends the
        threads (a stopping worker: runtime/lifespan.py); how many connections were open."""
        opened = 0
        for executor in self._idle:
            opened += executor.submit(_connections_close).result()
            executor.shutdown()
        self.created -= len(self._idle)
        self._idle.clear()
        return opened


def _connections_close() -> int:
    """On a request thread: closes its database connections; how many were open."""
    opened = sum(1 for alias in connections if connections[alias].connection is not None)
    connections.close_all()
    return opened


class PooledExecutorASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.executors = ExecutorPool(EXECUTORS)
        # The requests in flight: their executor, and the future that aborts them.
        self._in_flight: dict[RequestExecutor, asyncio.Future[None]] = {}
        self._watching = False
        # The abort counter counts workers: a drain that several stuck threads cause is one.
        self._abort_counted = False

    def load_middleware(self, is_async: bool = False) -> None:
        """Builds the chain from settings.MIDDLEWARE with Django's classes replaced by their
        inline subclasses (settings keep Django's names: `check --deploy` looks for them)."""
        if not is_async:
            super().load_middleware(is_async)
            return
        from runtime import inline_middleware  # imports Django's middleware: after django.setup()

        # A module global for the length of the call: one handler at a time swaps it.
        with _SWAP:
            import_string = base.import_string  # type: ignore[attr-defined]

            def inline_import(path: str) -> Any:
                return inline_middleware.BY_DJANGO_PATH.get(path) or import_string(path)

            base.import_string = inline_import  # type: ignore[attr-defined]
            try:
                super().load_middleware(is_async)
            finally:
                base.import_string = import_string  # type: ignore[attr-defined]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        timeout = workers.request_timeout()
        if timeout is None:  # not one of our Uvicorn workers: no watchdog
            executor = await self.executors.borrow()
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.handle(scope, receive, send)
            finally:
                self.executors.give_back(executor)
            return
        if not self._watching:
            self._watching = True
            workers.on_tick(lambda: self._watch(timeout))
        await self._call_watched(scope, receive, send)

    async def _call_watched(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        executor = await self.executors.borrow()
        abort: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[executor] = abort
        started = False

        async def tracked_send(message: Mapping[str, Any]) -> None:
            nonlocal started
            if abort.done():
                return  # answered 504 already; whatever the stuck code sends later is dropped
            started = True
            await send(message)

        stuck = False
        task: asyncio.Future[Any] | None = None
        try:
            async with ThreadSensitiveContext(executor=executor):
                task = asyncio.ensure_future(self.handle(scope, receive, tracked_send))
                either: set[asyncio.Future[Any]] = {task, abort}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not abort.done():
                    await task  # its result, or its exception
                    return
                stuck = True
                task.cancel()
                if not started:
                    await send_gateway_timeout(send)
        finally:
            if task is not None and not task.done():
                task.cancel()  # this request was cancelled (client gone, server stopping)
            del self._in_flight[executor]
            if not stuck:
                self.executors.give_back(executor)

    def _watch(self, timeout: float) -> None:
        """On the event loop, at each tick: a request thread busy past the timeout is stuck."""
        now = monotonic()
        for executor, abort in list(self._in_flight.items()):
            since = executor.busy_since
            if abort.done() or since is None or now - since < timeout:
                continue
            abort.set_result(None)
            _report_stuck(executor, now - since)
            if not self._abort_counted:
                self._abort_counted = True
                from core.metrics import count_worker_abort

                count_worker_abort("request_thread")
            server = workers.current()
            if server is not None:
                server.drain("a request thread ran past the timeout")


def _report_stuck(executor: RequestExecutor, seconds: float) -> None:
    thread_id = executor.thread_id
    if thread_id is not None:
        workers.stuck_thread_mark(thread_id)
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)"
    # The worker_abort hook's line (app/gunicorn.conf.py), for one thread: `jq -r .stacks`.
    log.critical(
        "worker %s: a request thread ran %.0fs, past the timeout (WORKER TIMEOUT); stacks in "
        "the stacks field; draining",
        os.getpid(),
        seconds,
        extra={"stacks": f"Thread {thread_id}:\n{stack}", "seconds": round(seconds, 1)},
    )


async def send_gateway_timeout(send: Any) -> None:
    """The JSON 504 Nginx would give, given here at once: the thread may never return."""
    body = (
        b'{"error":{"code":"gateway_timeout","message":"The application took too long to '
        b'answer."}}\n'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 504,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"5"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def get_asgi_application() -> PooledExecutorASGIHandler:
    """django.core.asgi.get_asgi_application with the pooled handler."""
    import django

    django.setup(set_prefix=False)
    return PooledExecutorASGIHandler()
