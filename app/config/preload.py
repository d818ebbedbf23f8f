"""What a preloaded Gunicorn master does last before it forks its workers (gunicorn.conf.py's
when_ready): build what every worker would otherwise build for itself on its first requests,
then move every object alive into the collector's permanent generation.

Each worker inherits the master's pages copy-on-write. A structure built lazily (the URL
resolver's reverse maps, django-ninja's OpenAPI document and the pydantic schemas it walks, the
template engines) is built again in each worker, on private pages, and so is a module imported
only after the fork (the event loop and HTTP parser a Uvicorn worker sets up, the cache backends
a first request creates). And the cyclic garbage
collector writes into the header of every object it examines, so a worker's first collections
copy the pages of objects it inherited and never changes. gc.freeze() takes them out of every
later collection (CPython documents this use before a fork). Last, the master serves the
requests GUNICORN_PRELOAD_WARM_PATHS names itself (preload_requests), so the code behind them
has run once before the fork.
"""

import asyncio
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

log = logging.getLogger("gunicorn.error")


def preload_warm(worker_class: type | None = None) -> None:
    """Builds the lazily-built structures every worker uses, and imports what each would import
    on its first requests."""
    from django.template import engines
    from django.template.backends.django import DjangoTemplates
    from django.urls import get_resolver

    from config.api import api

    get_resolver().reverse_dict  # noqa: B018 - its first access populates the resolver
    api.get_openapi_schema()
    for engine in engines.all():
        if isinstance(engine, DjangoTemplates):
            engine.engine.template_loaders  # noqa: B018 - instantiates the loaders, once
    settings_imports()
    if worker_class is not None:
        server_imports(worker_class)


def settings_imports() -> None:
    """Imports the classes settings name that Django loads on a request: each cache's backend
    (created and dropped: a backend connects on its first command, not before), the session
    serializer and the message storage."""
    from django.conf import settings
    from django.core.cache import caches
    from django.utils.module_loading import import_string

    for alias in settings.CACHES:
        _tolerated(f"the cache {alias!r}", partial(caches.create_connection, alias))
    _tolerated("SESSION_SERIALIZER", partial(import_string, settings.SESSION_SERIALIZER))
    _tolerated("MESSAGE_STORAGE", partial(import_string, settings.MESSAGE_STORAGE))


def server_imports(worker_class: type) -> None:
    """Imports what a Uvicorn worker imports once forked, picked as its Config picks them: the
    event loop (uvloop) and the HTTP (httptools), WebSocket and lifespan protocols. A C extension
    imported after the fork is loaded and relocated in each worker, on its own pages."""
    kwargs = getattr(worker_class, "CONFIG_KWARGS", None)
    if kwargs is None:
        return  # not a Uvicorn worker
    _tolerated("Uvicorn's event loop and protocols", partial(_uvicorn_imports, kwargs))


def _uvicorn_imports(kwargs: dict[str, Any]) -> None:
    from uvicorn.config import HTTP_PROTOCOLS, LIFESPAN, WS_PROTOCOLS, Config
    from uvicorn.importer import import_from_string

    # As the worker builds its own (uvicorn_worker's UvicornWorker.__init__, in this process),
    # less the app, which only load() reads, and never a logging configuration of its own.
    config = Config(**{**kwargs, "app": "", "log_config": None})
    config.get_loop_factory()
    protocols: tuple[tuple[dict[str, Any], Any], ...] = (
        (HTTP_PROTOCOLS, config.http),
        (WS_PROTOCOLS, config.ws),
        (LIFESPAN, config.lifespan),
    )
    for table, name in protocols:
        path = table.get(name, name) if isinstance(name, str) else None
        if path:
            import_from_string(path)


def _tolerated(what: str, load: Callable[[], object]) -> None:
    """One import ahead of its time. Gunicorn stops if its master raises here, so a failure is
    logged and left to the worker, which meets it where it would have without preload (a cache
    alias it never uses, a setting it never reads)."""
    try:
        load()
    except (Exception, SystemExit):  # Uvicorn exits on a custom loop it cannot import
        log.warning("preload: %s could not be imported before the fork", what, exc_info=True)


# Past this, no warm-up request starts, and the one in flight is cancelled, its database
# queries cut: Gunicorn listens while the master warms up.
WARM_UP_BUDGET_SECONDS = 10.0
# What a request cancelled at the budget, or by a stop, gets to end (a query cut fails at once);
# past it the master forks without waiting for it (code stuck outside the database).
WARM_UP_GRACE_SECONDS = 2.0
# The database must answer the master within this, or it serves no warm-up request at all.
DATABASE_PROBE_SECONDS = 2.0
# How often the warm-up looks at its budget and at a stop Gunicorn was asked for.
_POLL_SECONDS = 0.05
# Gunicorn's graceful and quick stops: asked for during the warm-up, they end it.
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


@dataclass
class WarmUp:
    """What the master's warm-up served, in order, and why it ended early (None: it did not)."""

    planned: int = 0
    statuses: list[int] = field(default_factory=list)
    stopped: str | None = None

    def summary(self) -> str:
        count = len(self.statuses)
        answers = ", ".join(map(str, self.statuses))
        served = (
            f"{count} request{'s' if count > 1 else ''} served ({answers})"
            if count
            else "no request served"
        )
        if self.stopped is None:
            return served
        return f"{served}, {self.planned - count} of {self.planned} not: {self.stopped}"


def preload_requests(paths: Sequence[str], *, stopping: threading.Event | None = None) -> WarmUp:
    """GETs of `paths` through the project's ASGI application (the edge, Django's handler, every
    middleware, the views), each served twice by the master before the fork: a cached path is
    first filled, then answered from the cache. CPython specialises a function's bytecode in
    place over its first calls, and a request fills caches no import does: each a page every
    worker would otherwise write, and so copy, on its own first requests.

    They are traced nowhere (they enter below tracing, the calls they make suppressed), counted
    nowhere (core.metrics.metrics_discarded), and their log lines carry the request ID
    preload-warm-up-N. What they started is ended before the fork, or a worker would inherit it
    without its thread: the request thread they borrowed, with its connections (the worker would
    queue requests on an executor that has no thread), and the cache's pooled connections; a
    thread still running then is logged as an error. No database check starts meanwhile
    (core.db.replica_checks_held): reads go to the primary.

    Bounded, since Gunicorn already listens. None is served unless the database answers within
    DATABASE_PROBE_SECONDS; the first answer of 500 or more (a database or cache that fails)
    ends the warm-up. At WARM_UP_BUDGET_SECONDS, or when Gunicorn is asked to stop, the request
    in flight is cancelled and its database queries cut; one still running WARM_UP_GRACE_SECONDS
    later is left behind in the master (they run on a thread of their own, which the workers do
    not inherit). The workers then start as they would without it.

    Only under the pooled runtime's ASGI application, with multiprocess metrics; else nothing is
    served, and the summary says why."""
    from django.conf import settings
    from django.http.request import validate_host

    from core.db import replica_checks_held
    from core.metrics import metrics_discarded
    from runtime import config as runtime_config
    from runtime.asgi import EXECUTORS, ExecutorPool, PooledExecutorASGIHandler

    warm_up = WarmUp(planned=2 * len(paths))
    if not paths:
        return warm_up
    asgi = sys.modules.get("config.asgi")
    if asgi is None:
        warm_up.stopped = "Gunicorn loaded the WSGI application (GUNICORN_PROFILE cpu or mixed)"
        return warm_up
    handler = asgi.handler
    if not isinstance(handler, PooledExecutorASGIHandler):
        warm_up.stopped = "SERVER_RUNTIME=stock serves with Django's own handler"
        return warm_up
    multiproc_dir = runtime_config.multiproc_dir()
    if multiproc_dir is None:
        warm_up.stopped = "no multiprocess metrics directory (gunicorn.conf.py sets it)"
        return warm_up
    # A host the deployment allows, and the scheme Nginx says, so each request takes the path a
    # real one takes (no DisallowedHost, no redirect to HTTPS).
    allowed = settings.ALLOWED_HOSTS
    hosts = ["localhost" if host == "*" else host.lstrip(".") for host in allowed]
    host = next((h for h in hosts if h and validate_host(h, allowed)), None)
    if host is None:
        warm_up.stopped = "no host in ALLOWED_HOSTS to send"
        return warm_up
    headers = []
    if settings.SECURE_PROXY_SSL_HEADER:
        name, value = settings.SECURE_PROXY_SSL_HEADER
        headers.append((name.removeprefix("HTTP_").lower().replace("_", "-"), value))
    stopping = stopping or threading.Event()
    deadline = time.monotonic() + WARM_UP_BUDGET_SECONDS
    before = set(threading.enumerate())
    with metrics_discarded(multiproc_dir), replica_checks_held():
        thread = threading.Thread(
            target=_warm_up_run,
            args=(warm_up, asgi.served, paths, host, headers, stopping, deadline),
            name="preload-warm-up",
            daemon=True,
        )
        thread.start()
        _warm_up_wait(thread, stopping, deadline)
        if thread.is_alive():
            warm_up.stopped = warm_up.stopped or (
                f"a request still ran {WARM_UP_GRACE_SECONDS:g}s after it was cancelled (code "
                "waiting outside the database?): the master forks without it"
            )
        # Each step on its own: one that fails must not keep the others from running. A thread
        # still in a call is not waited for (ExecutorPool.close).
        for what, step in (
            ("the request threads", handler.executors.close),  # with their connections
            ("the cache's connections", _redis_pools_close),
        ):
            try:
                step()
            except Exception:  # Gunicorn stops if its master raises here
                log.warning("preload: ending %s failed", what, exc_info=True)
        # Whatever close() left, the workers start from an empty pool of their own.
        handler.executors = ExecutorPool(EXECUTORS)
    # A request thread whose query was cut is still unwinding: it gets the grace to end.
    ended_by = time.monotonic() + WARM_UP_GRACE_SECONDS
    for started in set(threading.enumerate()) - before:
        started.join(max(0.0, ended_by - time.monotonic()))
    running = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    if running:
        _left_behind.extend(running)
        log.error(
            "preload: threads the warm-up started still run at the fork: %s",
            [t.name for t in running],
        )
    return warm_up


# Threads the warm-up left running in the master (code stuck outside the database).
_left_behind: list[threading.Thread] = []


def preload_left_behind() -> bool:
    """Whether the warm-up left a thread running in this master: interpreter exit would wait
    for it (concurrent.futures joins its threads), so gunicorn.conf.py's on_exit ends the
    process instead."""
    return any(thread.is_alive() for thread in _left_behind)


def _warm_up_wait(thread: threading.Thread, stopping: threading.Event, deadline: float) -> None:
    """On the master's own thread, where Gunicorn's signal handlers run: until the warm-up ends,
    or its grace after the budget or a stop is over."""
    limit = deadline + WARM_UP_GRACE_SECONDS
    while thread.is_alive():
        if stopping.is_set():  # the grace from the first poll that saw it (min keeps that one)
            limit = min(limit, time.monotonic() + WARM_UP_GRACE_SECONDS)
        if time.monotonic() >= limit:
            return
        thread.join(_POLL_SECONDS)


@contextmanager
def _stops_seen(stopping: threading.Event) -> Iterator[None]:
    """Sets `stopping` when Gunicorn is asked to stop, and still lets Gunicorn's own handler
    queue the signal for its main loop (which handles it once the warm-up has ended). Only on
    the main thread, under handlers of Gunicorn's (a callable each)."""
    on_main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {stop: signal.getsignal(stop) for stop in _STOPS} if on_main else {}
    if not previous or not all(callable(handler) for handler in previous.values()):
        yield
        return

    def seen(number: int, frame: FrameType | None) -> None:
        stopping.set()
        previous[number](number, frame)

    for stop in _STOPS:
        signal.signal(stop, seen)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _warm_up_run(
    warm_up: WarmUp,
    app: Any,
    paths: Sequence[str],
    host: str,
    headers: list[tuple[str, str]],
    stopping: threading.Event,
    deadline: float,
) -> None:
    """The warm-up's thread: its own event loop, untraced, serving `paths` into `warm_up`."""
    from core.aio import loop_clients_close
    from core.db import database_queries_cut_all, primary_answers
    from core.tracing import untraced

    def ended() -> str | None:
        if stopping.is_set():
            return "Gunicorn was asked to stop"
        if time.monotonic() >= deadline:
            return f"the {WARM_UP_BUDGET_SECONDS:g}s budget ran out"
        return None

    async def served(path: str, number: int) -> int | None:
        """The answer's status; None if the request was cancelled (its queries cut first, so
        that its thread lets go)."""
        request_id = ("x-request-id", f"preload-warm-up-{number}")
        request = asyncio.ensure_future(
            asgi_get(app, path, host=host, headers=[*headers, request_id])
        )
        while not request.done():
            await asyncio.wait({request}, timeout=_POLL_SECONDS)
            if not request.done() and ended() is not None:
                request.cancel()
                # Until it ends (or the master's grace is over): a query it sends after a cut
                # is cut too.
                while not request.done():
                    database_queries_cut_all()
                    await asyncio.wait({request}, timeout=_POLL_SECONDS)
                return None
        return request.result()

    async def serve() -> None:
        try:
            if not await primary_answers(timeout=DATABASE_PROBE_SECONDS):
                warm_up.stopped = (
                    f"the database did not answer SELECT 1 (within {DATABASE_PROBE_SECONDS:g}s)"
                )
                return
            for path in paths:
                for _ in range(2):
                    reason = ended()
                    if reason is not None:
                        warm_up.stopped = f"{reason} before GET {path}"
                        return
                    status = await served(path, len(warm_up.statuses) + 1)
                    if status is None:
                        warm_up.stopped = f"{ended()} during GET {path}"
                        return
                    warm_up.statuses.append(status)
                    if status >= 500:  # a database or cache down: the rest would wait too
                        warm_up.stopped = f"GET {path} answered {status}"
                        return
        finally:
            await loop_clients_close()

    try:
        untraced(asyncio.run)(serve())
    except Exception:
        log.warning("preload: the warm-up requests failed", exc_info=True)
        warm_up.stopped = warm_up.stopped or "it failed (logged above)"


def _redis_pools_close() -> None:
    """Closes the connections django-redis pooled for the process (its pools are shared by every
    thread): a worker would drop its inherited copies unused, and the master keep them open."""
    from django.conf import settings
    from django.core.cache import caches
    from django_redis.cache import RedisCache

    for alias in settings.CACHES:
        # A backend of its own (its client takes the process's pool): caches[alias] would leave
        # one in this context, which the workers' requests inherit.
        backend = caches.create_connection(alias)
        if isinstance(backend, RedisCache):
            backend.client.get_client(write=True).connection_pool.disconnect()


async def asgi_get(
    app: Any, target: str, *, host: str, headers: Sequence[tuple[str, str]] = ()
) -> int:
    """GET `target` (a path and its query) from the ASGI `app`, as a request Nginx passes on
    arrives; the status it answered (500 if it answered nothing). The body is dropped."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", host.encode())]
        + [(name.encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays until the answer is sent
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0] if statuses else 500


def preload_freeze() -> int:
    """Collects once, then freezes what is left; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def preload_finish(worker_class: type | None = None, paths: Sequence[str] = ()) -> None:
    stopping = threading.Event()
    with _stops_seen(stopping):  # a stop asked for while the structures build ends it too
        preload_warm(worker_class)
        warm_up = preload_requests(paths, stopping=stopping)
    frozen = preload_freeze()
    log.log(
        logging.INFO if warm_up.stopped is None else logging.WARNING,
        "preload: structures built and %d objects frozen before the fork; warm-up: %s",
        frozen,
        warm_up.summary(),
    )
