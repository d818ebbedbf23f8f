"""The ASGI lifespan, under either runtime: a worker that stops releases what it holds.

Uvicorn sends lifespan.shutdown once the worker has stopped taking requests and the last one
has ended (after the drain, runtime/workers.py). Then the event loop's long-lived clients (the
upstream HTTP session, the cache instance's Redis connection: core.aio) are closed, and so are
the database connections the pooled handler's request threads kept open (DB_CONN_MAX_AGE) and
those of the database checks (core.db's replica checkers): each is ended with PostgreSQL's
Terminate message, so PgBouncer logs a "client close request", not a "client unexpected eof" as
for a client that died. Without a lifespan answer Uvicorn logs that the
protocol is unsupported and the process's exit just drops them.
"""

import asyncio
import logging
from typing import Any

from core.aio import loop_clients_close
from core.db import replica_checkers_stop
from runtime.asgi import PooledExecutorASGIHandler

log = logging.getLogger(__name__)


class Lifespan:
    """Wraps the application: lifespan messages are answered here, everything else passes."""

    def __init__(self, app: Any, *, handler: Any) -> None:
        self.app = app
        self.handler = handler  # Django's handler, inside whatever wraps it (tracing)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.release()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def release(self) -> None:
        clients = await loop_clients_close()
        connections = 0
        if isinstance(self.handler, PooledExecutorASGIHandler):
            try:
                connections = await asyncio.to_thread(self.handler.executors.close)
            except Exception:
                log.warning("closing the request threads' connections failed", exc_info=True)
        checks = await asyncio.to_thread(replica_checkers_stop, timeout=1.0)
        log.info(
            "worker stopping: closed %d long-lived clients, %d database connections and %d "
            "database checks",
            clients,
            connections,
            checks,
        )
