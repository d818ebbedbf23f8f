"""Long-lived async clients, one per event loop.

A Uvicorn worker runs one event loop in its main thread for its whole life, so it keeps one
pooled HTTP session and one Redis connection there. Anywhere else (a WSGI worker or a test runs an
async view through async_to_sync, in a short-lived loop on another thread) a client is made
for the call and closed after it, so nothing is left bound to a loop that is gone.

A worker that stops closes its loop's clients (loop_clients_close, from the ASGI lifespan's
shutdown: runtime/lifespan.py), each as its library closes it (for an HTTPS upstream, with TLS's
close_notify), rather than leaving its sockets to the process's exit.
"""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)
_every: list["PerLoop[Any]"] = []


class PerLoop[T]:
    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._factory = factory
        self._close = close
        self._by_loop: dict[asyncio.AbstractEventLoop, T] = {}
        _every.append(self)

    async def close_for_loop(self) -> int:
        """Closes the running loop's client, if it made one; how many it closed (0 or 1)."""
        client = self._by_loop.pop(asyncio.get_running_loop(), None)
        if client is None:
            return 0
        await self._close(client)
        return 1

    @asynccontextmanager
    async def use(self) -> AsyncIterator[T]:
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            client = self._by_loop.get(loop)
            if client is None:
                client = self._by_loop[loop] = self._factory()
            yield client
            return
        client = self._factory()
        try:
            yield client
        finally:
            await self._close(client)


async def loop_clients_close() -> int:
    """Closes every PerLoop's client of the running loop; how many it closed. One that fails to
    close is logged and the others are still closed."""
    closed = 0
    for per_loop in _every:
        try:
            closed += await per_loop.close_for_loop()
        except Exception:
            log.warning("closing a client at shutdown failed", exc_info=True)
    return closed
