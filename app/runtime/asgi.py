"""Django's ASGI handler with one reused thread per request for its sync work.

Django runs each ASGI request's sync code (ORM calls, sync middleware, signal receivers) in a
thread-sensitive context: all of it on one thread, so a request keeps one database connection
and its transactions. Stock Django (asgiref 3.13) gives every request a new single-thread
executor: a thread started for the request and a second thread started at its end to join it,
with the event loop waiting on each start (asgiref issue #535). Under load that is a large part
of the per-request cost, and the request's database connection dies with its thread, so every
request also logs in to PgBouncer again (SCRAM, checked one at a time on one core: under a crowd
of clients the logins queue until they time out as 503s; docs/ARCHITECTURE.md).

Here a request borrows a single-thread executor from a pool at its first sync call and gives it
back when it ends, the way a gthread worker reuses its threads: a request's sync calls still
share one thread (asgiref's ThreadSensitiveContext(executor=...), given the request's Lease), and
that thread's database connection lives on for DB_CONN_MAX_AGE, checked by CONN_HEALTH_CHECKS
before reuse, as under WSGI. A thread serves one request at a time. The pool holds at most
EXECUTORS; a request whose first sync call finds all of them lent waits for one, so threads and
PgBouncer client connections per worker are bounded. One that may write (not GET, HEAD or
OPTIONS) waits no longer than THREAD_WAIT_SECONDS: then it is answered 503, having run nothing
on a thread (Lease._no_thread); it is lent a thread before the reads waiting, whose wait has no
bound (ExecutorPool.give_back). A request that runs nothing on its thread (an async view, a
cached page) never takes one, so threads bound only the requests that use them: Django's own
per-request hops to the thread are skipped when they have nothing to do there (handle, below).

WORKER TIMEOUT for sync code (the watchdog below): a request whose thread has been inside one
sync call longer than Gunicorn's timeout is stuck, as surely as a worker whose event loop went
silent. Its thread's stack is logged as worker_abort logs stacks, the abort counted, the client
answered a JSON 504 at once, its executor never lent again, and the worker drains and is
replaced (runtime/workers.py); the other requests in flight finish. Whatever the request writes
past the timeout, or after that 504, is refused and rolled back (core/write_deadline.py).
"""

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from time import monotonic
from typing import Any, cast

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.dispatch import Signal
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from core import write_deadline
from core.errors import ServerBusy
from runtime import config as runtime_config
from runtime import metrics as worker_metrics
from runtime import workers

# Request threads per worker (GUNICORN_REQUEST_THREADS), each with up to two PgBouncer client
# connections (primary and replica). PGBOUNCER_MAX_CLIENT_CONN is sized from it: compose (2,000)
# for 3 web replicas at up to 128 (1,536), Kubernetes for the web autoscaler's maximum
# (tests/k8s/test_k8s_workloads.py).
EXECUTORS = runtime_config.REQUEST_THREADS
THREAD_WAIT_SECONDS = runtime_config.THREAD_WAIT_SECONDS
# Requests that wait for a thread as long as it takes (Nginx's proxy_read_timeout still ends
# them): a read cut off by Nginx has written nothing, so only the others are refused in time.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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


class Lease(Executor):
    """One request's thread, the executor its ThreadSensitiveContext sends the request's sync
    calls to. The first call borrows a RequestExecutor from the pool (or waits for one while all
    are lent) and the request keeps it to its end. Also what runs on the thread before the
    request's first call there (`first`), and whether the request ran anything there (`used`).

    Called on the event loop only (asyncio's run_in_executor submits from there)."""

    def __init__(self, pool: "ExecutorPool", *, bounded: bool = True) -> None:
        self.pool = pool
        # Whether its wait for a thread is bounded (_no_thread): a request that may write.
        self.bounded = bounded
        self.executor: RequestExecutor | None = None
        self.first: Callable[[], Any] | None = None
        self.used = False
        self.ended = False
        self._error: BaseException | None = None
        # Calls made while the lease waits for a thread, in order; None when it does not wait.
        self._waiting: list[tuple[Future[Any], Callable[[], Any]]] | None = None
        self._give_up: asyncio.TimerHandle | None = None
        # Refused a thread (_no_thread): what the request still runs goes to the pool's overflow.
        self._refused = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.ended:
            # A call from a task that outlived its request (cancelled, answered 504): the
            # thread may be another request's by now.
            raise RuntimeError("the request has ended: its thread is no longer its own")
        call = partial(self._run, partial(fn, *args, **kwargs))
        if self._refused:
            return self.pool.overflow().submit(call)
        if self.executor is None and self._waiting is None:
            self.executor = self.pool.take()
            if self.executor is None:
                self._waiting = []
                self.pool.wait(self)
                if self.bounded:
                    self._give_up = asyncio.get_running_loop().call_later(
                        self.pool.wait_seconds, self._no_thread
                    )
        if self.executor is not None:
            return self.executor.submit(call)
        assert self._waiting is not None
        future: Future[Any] = Future()
        self._waiting.append((future, call))
        return future

    def lend(self, executor: RequestExecutor) -> None:
        """The pool lends the thread this lease waited for: the calls made meanwhile run on it in
        turn, less those their callers cancelled."""
        self._stop_waiting()
        self.executor = executor
        waiting, self._waiting = self._waiting or [], None
        for future, call in waiting:
            if future.set_running_or_notify_cancel():
                _chain(executor.submit(call), future)

    def _no_thread(self) -> None:
        """No thread came free within the pool's wait: the calls waiting fail with ServerBusy
        (a 503 the client may retry: nothing of the request ran on a thread, so nothing of it
        was written there), and the lease leaves the line."""
        self._give_up = None
        self._refused = True
        self.pool.leave(self)
        waiting, self._waiting = self._waiting or [], None
        busy = ServerBusy(
            "The server is busy; retry shortly.", retry_after=math.ceil(self.pool.wait_seconds)
        )
        for future, _ in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(busy)
        from core.metrics import count_request_refused

        count_request_refused("no_request_thread")
        log.warning(
            "a request waited %gs for a request thread, all %d of this worker's busy: answered "
            "503 (GUNICORN_REQUEST_THREADS, GUNICORN_THREAD_WAIT_SECONDS)",
            self.pool.wait_seconds,
            self.pool.size,
        )

    def _stop_waiting(self) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None

    def _run(self, call: Callable[[], Any]) -> Any:
        """On the thread, before each of the request's calls: `first` once. If it failed, every
        call of the request fails with its error, as the whole request fails in Django."""
        self.used = True
        if self._error is not None:
            raise self._error
        first, self.first = self.first, None
        if first is not None:
            try:
                first()
            except BaseException as error:
                self._error = error
                raise
        return call()

    def closing(self) -> bool:
        """Whether the request ran anything on its thread. Closing its response runs there even
        if request_started failed, and what was left to run first does not."""
        self.first = None
        self._error = None
        return self.used

    def end(self, *, stuck: bool = False) -> None:
        """The request has ended: its thread goes back to the pool, unless it is stuck in a call,
        and calls still waiting for a thread are cancelled."""
        self.ended = True
        self.first = None
        self._stop_waiting()
        for future, _ in self._waiting or []:
            future.cancel()
        self._waiting = None
        executor, self.executor = self.executor, None
        if executor is not None and not stuck:
            self.pool.give_back(executor)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool's threads outlive the request: the pool ends them (ExecutorPool.close)."""


def _outcome_dropped(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled():
        task.exception()


def _chain(source: Future[Any], target: Future[Any]) -> None:
    """`target` (running) ends as `source` does."""

    def copy(done: Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


class ExecutorPool:
    """Single-thread executors, lent one per request that runs sync code, most recently returned
    first."""

    def __init__(self, size: int, wait_seconds: float = THREAD_WAIT_SECONDS) -> None:
        self.size = size
        # How long a request waits for a thread before it is answered 503 (Lease._no_thread).
        self.wait_seconds = wait_seconds
        self.created = 0
        self._idle: list[RequestExecutor] = []
        # Two lines, each first come first served: the requests that may write, whose wait is
        # bounded (Lease.bounded), are lent a thread before the reads, whose wait is not; a
        # flood of reads would otherwise keep every write waiting until it is refused.
        self._writers: deque[Lease] = deque()
        self._waiters: deque[Lease] = deque()
        self._overflow: RequestExecutor | None = None

    def overflow(self) -> RequestExecutor:
        """One thread beside the pool's, for what a request refused a thread still runs (Django
        runs a view's exception through the middleware on the request's thread, and closes its
        response there): it never waits again in the line it was refused from."""
        if self._overflow is None:
            self._overflow = RequestExecutor()
        return self._overflow

    def take(self) -> RequestExecutor | None:
        """An idle or new executor, or None when all `size` are lent."""
        if self._idle:
            return self._idle.pop()  # the warmest thread: its connection is the least likely stale
        if self.created < self.size:
            self.created += 1
            return RequestExecutor()
        return None

    def lent(self) -> int:
        """Executors lent now; a stuck one stays lent, as it is never given back."""
        return self.created - len(self._idle)

    def waiting(self) -> int:
        """Requests waiting for an executor (one gone while it waited takes none)."""
        return sum(not lease.ended for line in (self._writers, self._waiters) for lease in line)

    def wait(self, lease: Lease) -> None:
        """`lease` is lent an executor given back, after the leases ahead of it in its line."""
        (self._writers if lease.bounded else self._waiters).append(lease)

    def leave(self, lease: Lease) -> None:
        with contextlib.suppress(ValueError):
            (self._writers if lease.bounded else self._waiters).remove(lease)

    def give_back(self, executor: RequestExecutor) -> None:
        for line in (self._writers, self._waiters):
            while line:
                lease = line.popleft()
                if not lease.ended:  # a request gone while it waited takes nothing
                    lease.lend(executor)
                    return
        self._idle.append(executor)

    def close(self) -> int:
        """Closes the idle threads' (and the overflow's) database connections, each on its own
        thread, and ends the threads (a stopping worker: runtime/lifespan.py); how many
        connections were open."""
        opened = 0
        idle, self._idle = self._idle, []
        self.created -= len(idle)
        overflow, self._overflow = self._overflow, None
        for executor in idle + ([overflow] if overflow else []):
            if executor.busy_since is not None:
                # Still in a call its request left when cancelled (a client gone, a preloading
                # master's warm-up past its budget): the connections are that call's, and
                # waiting for it could outlast any bound. Its thread ends once the call returns.
                executor.shutdown(wait=False)
                continue
            try:
                opened += executor.submit(_connections_close).result()
            finally:  # one that fails to close its connections still ends its thread
                executor.shutdown()
        return opened


# The lease of the request the current task serves.
_LEASE: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("request_lease", default=None)


@cache
def _thread_local_receivers() -> frozenset[Callable[..., Any]]:
    """The receivers of request_started and request_finished, Django's and core's, that act only
    on the thread they run on (its database connections and their query logs) or on the
    request's own context (its urlconf, its caches, its request ID). A request that ran nothing
    on its thread leaves them nothing to do there."""
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    from core.request_context import on_request_finished

    return frozenset(
        (close_caches, reset_urlconf, close_old_connections, reset_queries, on_request_finished)
    )


def _only_thread_local(signal: Signal, sender: type) -> bool:
    sync, async_ = signal._live_receivers(sender)
    allowed = _thread_local_receivers()
    return not async_ and all(receiver in allowed for receiver in sync)


def _connections_close() -> int:
    """On a request thread: closes its database connections; how many were open."""
    opened = sum(1 for alias in connections if connections[alias].connection is not None)
    connections.close_all()
    return opened


@dataclass(slots=True)
class Watched:
    """A request in flight, as the watchdog sees it."""

    abort: asyncio.Future[None]  # done: the watchdog answered it 504
    deadline: write_deadline.Deadline  # for its writes (core/write_deadline.py)
    stuck: bool = False  # found stuck: answered 504 unless something of it was saved


class PooledExecutorASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.executors = ExecutorPool(EXECUTORS)
        self._in_flight: dict[Lease, Watched] = {}
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

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ASGIHandler.handle, less its two thread hops when they have nothing to do.
        Django sends request_started and request_finished through the request's thread, one hop
        each. When their receivers are only the thread-local ones (_thread_local_receivers),
        request_started's run on the request's thread just before its first call there, and
        request_finished's here if nothing ran there: a request that never leaves the event loop
        never waits for a thread. Any other receiver keeps Django's way, which a fork's own
        receiver may need (the ORM, a thread-local)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        sender = self.__class__
        lease = _LEASE.get()
        if lease is not None and _only_thread_local(signals.request_started, sender):
            # In a copy of the request's context, as Django's hop would run them.
            run = contextvars.copy_context().run
            lease.first = partial(run, signals.request_started.send, sender=sender, scope=scope)
        else:
            await signals.request_started.asend(sender=sender, scope=scope)
        try:
            await self._respond(scope, body_file, receive, send)
        except AssertionError:  # Django's: raised by its disconnect listener
            body_file.close()
            raise
        body_file.close()

    async def _respond(
        self, scope: dict[str, Any], body_file: Any, receive: Any, send: Any
    ) -> None:
        """The rest of Django's handle, unchanged but for how a response is closed."""
        request, error_response = self.create_request(scope, body_file)
        if request is None:  # then error_response is Django's 400 or 413
            error = cast(HttpResponseBase, error_response)
            await self.send_response(error, send)
            await self._close(error)
            return

        async def process_request(request: Any, send: Any) -> HttpResponseBase:
            response = await self.run_get_response(request)
            # Cancelled: the client went away while the response was sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # Django's way: the disconnect listener first, so that cancelling it cannot fail in a way
        # that would leave the request's task running.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The request itself was cancelled (the watchdog answered it, the server stops): the
            # view's task may wait on a stuck thread for good. Their outcomes are nobody's, taken
            # here: asyncio would log the listener's RequestAborted as never retrieved.
            tasks[0].cancel()
            for task in tasks:
                task.add_done_callback(_outcome_dropped)
            raise
        for task in tasks:
            if task.done():
                # The listener's RequestAborted (the client gone, or the response complete) is
                # looked at, not raised: raised here it would put this frame in its traceback,
                # and this frame holds the task that holds it, a cycle keeping the whole
                # request alive until the garbage collector finds it.
                if task.cancelled() or not isinstance(task.exception(), RequestAborted):
                    task.result()
            else:
                task.cancel()  # a view may handle its cancellation
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await self._close(None)
        else:
            await self._close(response)
        # Django's own middleware ties the request to itself (request.user's lazy object and
        # request.auser close over it, the messages storage keeps it): cycles that only the
        # garbage collector frees, and everything the request holds with them. Nothing reads
        # the request after its response is closed, so it lets go of all it holds.
        request.__dict__.clear()

    async def _close(self, response: HttpResponseBase | None) -> None:
        """Closes the response (which sends request_finished), or sends request_finished for a
        request cancelled before it had one: on the request's thread if it ran anything there
        or a receiver is not thread-local, as Django does, else here on the event loop."""
        lease = _LEASE.get()
        used = lease is None or lease.closing()
        if used or not _only_thread_local(signals.request_finished, self.__class__):
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            else:
                await sync_to_async(response.close)()
        elif response is None:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        timeout = workers.request_timeout()
        if timeout is None:  # not one of our Uvicorn workers: no watchdog
            lease = Lease(self.executors, bounded=scope.get("method") not in SAFE_METHODS)
            lent = _LEASE.set(lease)
            try:
                async with ThreadSensitiveContext(executor=lease):
                    await self.handle(scope, receive, send)
            finally:
                _LEASE.reset(lent)
                lease.end()
            return
        if not self._watching:
            self._watching = True
            workers.on_tick(lambda: self._tick(timeout))
        await self._call_watched(scope, receive, send, timeout)

    async def _call_watched(
        self, scope: dict[str, Any], receive: Any, send: Any, timeout: float
    ) -> None:
        lease = Lease(self.executors, bounded=scope.get("method") not in SAFE_METHODS)
        lent = _LEASE.set(lease)
        abort: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Set before the request's task is created, which copies this context (and its sync
        # calls after it): a write must commit within the timeout the watchdog holds it to.
        deadline, deadline_set = write_deadline.start(timeout)
        watched = self._in_flight[lease] = Watched(abort, deadline)
        started = False

        async def tracked_send(message: Mapping[str, Any]) -> None:
            nonlocal started
            if abort.done():
                return  # answered 504 already; whatever the stuck code sends later is dropped
            started = True
            await send(message)

        task: asyncio.Future[Any] | None = None
        try:
            async with ThreadSensitiveContext(executor=lease):
                task = asyncio.ensure_future(self.handle(scope, receive, tracked_send))
                either: set[asyncio.Future[Any]] = {task, abort}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not abort.done():
                    await task  # its result, or its exception
                    return
                task.cancel()
                if not started:
                    await send_gateway_timeout(send)
        finally:
            if task is not None and not task.done():
                task.cancel()  # this request was cancelled (client gone, server stopping)
            del self._in_flight[lease]
            # Found stuck: answered 504 (its thread may still run), or not, as it had saved
            # something, and its thread still busy.
            executor = lease.executor
            stuck = watched.stuck and (
                abort.done() or (executor is not None and executor.busy_since is not None)
            )
            write_deadline.end(deadline_set)
            _LEASE.reset(lent)
            lease.end(stuck=stuck)

    def _tick(self, timeout: float) -> None:
        self._watch(timeout)
        pool = self.executors
        worker_metrics.observe_request_threads(
            size=pool.size, lent=pool.lent(), waiting=pool.waiting()
        )

    def _watch(self, timeout: float) -> None:
        """On the event loop, at each tick: a request thread busy past the timeout is stuck."""
        now = monotonic()
        for lease, watched in list(self._in_flight.items()):
            executor = lease.executor
            since = None if executor is None else executor.busy_since
            if executor is None or watched.stuck or since is None or now - since < timeout:
                continue
            deadline = watched.deadline
            answering = write_deadline.answer(deadline)
            if answering is None:
                continue  # a COMMIT is under way: it answers itself, or the next tick looks again
            if not answering and now - deadline.saved_at < timeout:
                continue  # it saved lately: its own answer is on its way
            watched.stuck = True
            if answering:
                watched.abort.set_result(None)  # nothing of it was saved, and nothing will be
            # Else something was saved: a 504 from here would be an error for a committed write.
            # The request answers itself if its thread comes back (or Nginx answers); the thread
            # is stuck all the same.
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


# Sent only when nothing of the request was saved, nor will be (core/write_deadline.py).
GATEWAY_TIMEOUT_BODY = (
    json.dumps(
        {"error": {"code": "gateway_timeout", "message": write_deadline.NOTHING_SAVED}},
        separators=(",", ":"),
    ).encode()
    + b"\n"
)


async def send_gateway_timeout(send: Any) -> None:
    """The JSON 504 Nginx would give, given here at once: the thread may never return."""
    body = GATEWAY_TIMEOUT_BODY
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
