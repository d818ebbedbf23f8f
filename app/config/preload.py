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
later collection (CPython documents this use before a fork). Last, the master serves one request
itself (preload_request), so the code every request runs has run once before the fork.
"""

import asyncio
import gc
import logging
import sys
from collections.abc import Callable
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


def preload_request() -> int | None:
    """One GET through the project's ASGI application (the edge, Django's handler, every
    middleware, a django-ninja operation), served by the master before the fork; its status, or
    None when not served. CPython specialises a function's bytecode in place over its first
    calls, and a request fills caches no import does: each a page every worker would otherwise
    write, and so copy, on its own first requests.

    The path is the API's OpenAPI document: answered without the database or the cache, so
    starting never waits for either. The request is traced nowhere (it enters below tracing),
    counted nowhere (core.metrics.metrics_discarded), and what it opened is closed before the
    fork: the request thread it borrowed, with any connection the thread opened (a worker would
    inherit an idle executor whose thread it does not have, and queue requests on it).

    Only under the pooled runtime, with multiprocess metrics, and when this master loaded the
    project's application (config.asgi); else nothing is served."""
    from django.conf import settings
    from django.http.request import validate_host
    from django.urls import NoReverseMatch, reverse

    from config.api import api
    from core.aio import loop_clients_close
    from core.metrics import metrics_discarded
    from runtime import config as runtime_config
    from runtime.asgi import PooledExecutorASGIHandler

    asgi = sys.modules.get("config.asgi")
    multiproc_dir = runtime_config.multiproc_dir()
    if asgi is None or multiproc_dir is None:
        return None
    handler = asgi.handler
    if not isinstance(handler, PooledExecutorASGIHandler):
        return None
    try:
        path = reverse(f"{api.urls_namespace}:openapi-json")
    except NoReverseMatch:  # the document is turned off
        return None
    # A host the deployment allows, so the request takes the path a real one takes.
    allowed = settings.ALLOWED_HOSTS
    hosts = ["localhost" if host == "*" else host.lstrip(".") for host in allowed]
    host = next((h for h in hosts if validate_host(h, allowed)), None)
    if host is None:
        return None

    async def serve() -> int:
        try:
            return await asgi_get(asgi.served, path, host=host)
        finally:
            await loop_clients_close()

    try:
        with metrics_discarded(multiproc_dir):
            return asyncio.run(serve())
    except Exception:
        log.warning("preload: the warm-up request failed", exc_info=True)
        return None
    finally:
        handler.executors.close()  # with the connections its thread opened


async def asgi_get(app: Any, target: str, *, host: str) -> int:
    """GET `target` (a path and its query) from the ASGI `app`, as a proxied HTTPS request
    arrives; the status it answered. The body is dropped."""
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
        "headers": [(b"host", host.encode()), (b"x-forwarded-proto", b"https")],
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
    return statuses[0]


def preload_freeze() -> int:
    """Collects once, then freezes what is left; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def preload_finish(worker_class: type | None = None) -> None:
    preload_warm(worker_class)
    status = preload_request()
    frozen = preload_freeze()
    served = "no request" if status is None else f"one request ({status})"
    log.info(
        "preload: structures built, %s served and %d objects frozen before the fork", served, frozen
    )
