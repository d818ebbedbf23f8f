"""Scenario 5, inside web: what binds preload's saving. A copy of the Gunicorn master is built
here as gunicorn.conf.py builds it (config.asgi, then config/preload.py for the Uvicorn worker)
and forks children the way the master forks workers. Measured, as one JSON line:

- idle_kb: what a child holds alone (USS) before it serves anything;
- served_kb: what a child holds alone after serving the scenario's warm-up paths in-process,
  through the application, ROUNDS times each;
- new_objects_kb: of that, the memory of the objects the child allocated and still holds
  (tracemalloc, in a third child serving the same): the rest of served_kb is pages inherited
  from the master and written to since;
- served_after_warm_kb: served_kb again, once this copy of the master has served the scenario's
  paths as the master serves its warm-up paths (config/preload.py's preload_requests): what of
  the written pages are written once (the first run of the code, lazily built caches), not on
  every use (reference counts).
"""

import asyncio
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Multiprocess metrics, as gunicorn.conf.py sets them up before the master imports the app (and
# preload_finish serves its warm-up request only with them), in a directory of this copy's own.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
sys.path.insert(0, "/app")

from smaps import rollup  # inlined: bench/incontainer/__init__.py

from config.asgi import application
from config.preload import asgi_get, preload_finish, preload_requests
from runtime import config as runtime_config
from runtime.workers import UvicornWorker

preload_finish(UvicornWorker, runtime_config.PRELOAD_WARM_PATHS)

PATHS = ("/api/products", "/api/products/1", "/bench/fanout/async?latency_ms=0")
ROUNDS = 3


async def get(target: str) -> int:
    return await asgi_get(application, target, host="localhost")


def serve() -> dict[str, Any]:
    async def run() -> list[int]:
        return [await get(path) for _ in range(ROUNDS) for path in PATHS]

    return {"statuses": sorted(set(asyncio.run(run())))}


def serve_traced() -> dict[str, Any]:
    tracemalloc.start()
    served = serve()
    return {**served, "new_objects_kb": tracemalloc.get_traced_memory()[0] // 1024}


def idle() -> dict[str, Any]:
    return {}


def forked(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work` in a forked child; what it returned, and the child's USS once it had."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, json.dumps(work()).encode())
        os.close(write)
        time.sleep(600)  # measured, then killed
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        result: dict[str, Any] = json.loads(pipe.read())
    result["private_kb"] = rollup(pid)["uss_kb"]
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return result


at_rest = forked(idle)
served = forked(serve)
traced = forked(serve_traced)


# The master's own warm-up once more (config/preload.py), on the scenario's paths.
warmed = preload_requests(PATHS)
served_after_warm = forked(serve)
print(
    json.dumps(
        {
            "paths": list(PATHS),
            "rounds": ROUNDS,
            "statuses": served["statuses"],
            "master_statuses": warmed.statuses,
            "idle_kb": at_rest["private_kb"],
            "served_kb": served["private_kb"],
            "new_objects_kb": traced["new_objects_kb"],
            "served_after_warm_kb": served_after_warm["private_kb"],
        }
    )
)
