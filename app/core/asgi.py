"""Django's ASGI handler with one reused thread per request for its sync work.

Django runs each ASGI request's sync code (ORM calls, sync middleware, signal receivers) in a
thread-sensitive context: all of it on one thread, so a request keeps one database connection
and its transactions. Stock Django (asgiref 3.13) gives every request a new single-thread
executor: a thread started for the request and a second thread started at its end to join it,
with the event loop waiting on each start (asgiref issue #535). Under load that is a large part
of the per-request cost, and the request's database connection dies with its thread, so every
request also logs in to PgBouncer again (SCRAM, one core: the source of 503s at 1,000 clients).

Here a request borrows a single-thread executor from a pool and gives it back when it ends,
the way a gthread worker reuses its threads: a request's sync calls still share one thread
(asgiref's ThreadSensitiveContext(executor=...)), and that thread's database connection lives on
for DB_CONN_MAX_AGE, checked by CONN_HEALTH_CHECKS before reuse, as under WSGI. A thread serves
one request at a time. The pool holds at most EXECUTORS; a request arriving when all are lent
waits for one, so threads and PgBouncer client connections per worker are bounded too.
"""

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

# Requests in flight per worker, each with its own thread and up to two PgBouncer client
# connections (primary and replica). 128 x 2 workers let ~850 fan-out requests (300 ms each) per
# second through, above what 2 cores serve. PGBOUNCER_MAX_CLIENT_CONN is sized from it: compose
# (2,000) for 3 web replicas (1,536), Kubernetes for the web autoscaler's maximum
# (tests/k8s/test_k8s_workloads.py).
EXECUTORS = 128
_SWAP = threading.Lock()


class ExecutorPool:
    """Single-thread executors, lent one per request, most recently returned first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.created = 0
        self._idle: list[ThreadPoolExecutor] = []
        self._waiters: deque[asyncio.Future[ThreadPoolExecutor]] = deque()

    async def borrow(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()  # the warmest thread: its connection is the least likely stale
        if self.created < self.size:
            self.created += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-request")
        waiter: asyncio.Future[ThreadPoolExecutor] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back(waiter.result())  # lent just as the request went away
            raise

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(executor)
                return
        self._idle.append(executor)

    def close(self) -> None:
        """Closes the idle threads' database connections, each on its own thread, and ends the
        threads (tests; a worker process simply exits)."""
        for executor in self._idle:
            executor.submit(connections.close_all).result()
            executor.shutdown()
        self.created -= len(self._idle)
        self._idle.clear()


class PooledExecutorASGIHandler(ASGIHandler):
    # Django's own middleware without a thread hop per method (core/inline_middleware.py).
    inline_middleware = True

    def __init__(self) -> None:
        super().__init__()
        self.executors = ExecutorPool(EXECUTORS)

    def load_middleware(self, is_async: bool = False) -> None:
        """Builds the chain from settings.MIDDLEWARE with Django's classes replaced by their
        inline subclasses (settings keep Django's names: `check --deploy` looks for them)."""
        if not (is_async and self.inline_middleware):
            super().load_middleware(is_async)
            return
        from core import inline_middleware  # imports Django's middleware: after django.setup()

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
        executor = await self.executors.borrow()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.executors.give_back(executor)


def get_asgi_application() -> PooledExecutorASGIHandler:
    """django.core.asgi.get_asgi_application with the pooled handler."""
    import django

    django.setup(set_prefix=False)
    return PooledExecutorASGIHandler()
