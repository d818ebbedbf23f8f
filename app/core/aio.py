"""Long-lived async clients, one per event loop.

A Uvicorn worker runs one event loop in its main thread for its whole life, so it keeps one
pooled HTTP session and one Redis pool there. Anywhere else (a WSGI worker or a test runs an
async view through async_to_sync, in a short-lived loop on another thread) a client is made
for the call and closed after it, so nothing is left bound to a loop that is gone.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class PerLoop[T]:
    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._factory = factory
        self._close = close
        self._by_loop: dict[asyncio.AbstractEventLoop, T] = {}

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
