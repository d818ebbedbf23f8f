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
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
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


# Past this, no further warm-up request starts (each one may still take what a request takes
# when the database or the cache is slow): Gunicorn listens while the master warms up.
WARM_UP_BUDGET_SECONDS = 10.0
# The database must answer the master within this, or it serves no warm-up request at all.
DATABASE_PROBE_SECONDS = 2.0


def preload_requests(paths: Sequence[str]) -> list[int]:
    """GETs of `paths` through the project's ASGI application (the edge, Django's handler, every
    middleware, the views), each served twice by the master before the fork: a cached path is
    first filled, then answered from the cache. The statuses, in order; none when not served.
    CPython specialises a function's bytecode in place over its first calls, and a request
    fills caches no import does: each a page every worker would otherwise write, and so copy,
    on its own first requests.

    They are traced nowhere (they enter below tracing, the calls they make suppressed) and
    counted nowhere (core.metrics.metrics_discarded). What they started is ended before the
    fork, or a worker would inherit it without its thread: the request thread they borrowed,
    with its connections (the worker would queue requests on an executor that has no thread),
    and the cache's pooled connections; a thread still running then is logged as an error. No
    database check starts meanwhile (core.db.replica_checks_held): reads go to the primary.

    Bounded, since Gunicorn already listens: none is served unless the database answers within
    DATABASE_PROBE_SECONDS; the first answer of 500 or more (a database or cache that fails)
    ends the warm-up; none starts after WARM_UP_BUDGET_SECONDS. The workers then start as they
    would without it.

    Only under the pooled runtime, with multiprocess metrics, and when this master loaded the
    project's application (config.asgi); else nothing is served."""
    from django.conf import settings
    from django.http.request import validate_host

    from core.aio import loop_clients_close
    from core.db import primary_answers, replica_checks_held
    from core.metrics import metrics_discarded
    from core.tracing import untraced
    from runtime import config as runtime_config
    from runtime.asgi import EXECUTORS, ExecutorPool, PooledExecutorASGIHandler

    asgi = sys.modules.get("config.asgi")
    multiproc_dir = runtime_config.multiproc_dir()
    if not paths or asgi is None or multiproc_dir is None:
        return []
    handler = asgi.handler
    if not isinstance(handler, PooledExecutorASGIHandler):
        return []
    # A host the deployment allows, and the scheme Nginx says, so each request takes the path a
    # real one takes (no DisallowedHost, no redirect to HTTPS).
    allowed = settings.ALLOWED_HOSTS
    hosts = ["localhost" if host == "*" else host.lstrip(".") for host in allowed]
    host = next((h for h in hosts if h and validate_host(h, allowed)), None)
    if host is None:
        log.warning("preload: no warm-up request: no host in ALLOWED_HOSTS to send")
        return []
    headers = []
    if settings.SECURE_PROXY_SSL_HEADER:
        name, value = settings.SECURE_PROXY_SSL_HEADER
        headers.append((name.removeprefix("HTTP_").lower().replace("_", "-"), value))

    async def serve() -> list[int]:
        statuses: list[int] = []
        started = time.monotonic()
        try:
            if not await primary_answers(timeout=DATABASE_PROBE_SECONDS):
                log.warning(
                    "preload: no warm-up request: the database did not answer within %gs",
                    DATABASE_PROBE_SECONDS,
                )
                return statuses
            for path in paths:
                for _ in range(2):
                    if time.monotonic() - started > WARM_UP_BUDGET_SECONDS:
                        return statuses
                    statuses.append(await asgi_get(asgi.served, path, host=host, headers=headers))
                    if statuses[-1] >= 500:  # a database or cache down: the rest would wait too
                        return statuses
            return statuses
        finally:
            await loop_clients_close()

    before = set(threading.enumerate())
    statuses: list[int] = []
    with metrics_discarded(multiproc_dir), replica_checks_held():
        try:
            statuses = untraced(asyncio.run)(serve())
        except Exception:
            log.warning("preload: the warm-up requests failed", exc_info=True)
        # Each step on its own: one that fails must not keep the others from running.
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
    running = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    if running:
        log.error("preload: threads the warm-up started still run at the fork: %s", running)
    return statuses


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
    preload_warm(worker_class)
    statuses = preload_requests(paths)
    frozen = preload_freeze()
    plural = "s" if len(statuses) > 1 else ""
    answers = ", ".join(map(str, statuses))
    served = f"{len(statuses)} request{plural} ({answers})" if statuses else "no request"
    log.info(
        "preload: structures built, %s served and %d objects frozen before the fork", served, frozen
    )
