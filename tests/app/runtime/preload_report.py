"""The project's ASGI app for Gunicorn, plus one test-only path, /preload-report, answering what
the serving worker inherited from a preloading master: its collector's frozen object count and
whether its URL resolver was already built, which of the modules a worker needs the master
had imported before it forked, and which threads it ran when it did."""

import gc
import json
import os
import sys
import threading
from typing import Any

from django.urls import get_resolver

from config.asgi import application as project_application

# Read as this module loads, in the master, before config/preload.py runs: the report compares.
_populated_at_import = get_resolver()._populated
# Imported on a worker's start or its first requests: the event loop, the HTTP parser and its
# protocol, the cache backend and its client.
WORKER_MODULES = (
    "uvloop",
    "httptools",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "django_redis.cache",
    "django_redis.client.default",
)
_before_fork: set[str] = set()
# The threads the master ran when it forked this worker.
_master: dict[str, Any] = {}


def _record_modules() -> None:
    _before_fork.update(name for name in WORKER_MODULES if name in sys.modules)
    _master["threads"] = [thread.name for thread in threading.enumerate()]


os.register_at_fork(before=_record_modules)  # in the master, as it forks each worker


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] != "/preload-report":
        await project_application(scope, receive, send)
        return
    body = json.dumps(
        {
            "frozen": gc.get_freeze_count(),
            "resolver_built_at_import": _populated_at_import,
            "resolver_built": get_resolver()._populated,
            "imported_before_fork": sorted(_before_fork),
            "master_threads": _master["threads"],
        }
    ).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
