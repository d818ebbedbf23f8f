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
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

log = logging.getLogger(__name__)
_every: list["PerLoop[Any]"] = []


class PerLoop[T]:
    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._factory = factory
        self._close = close
        self._by_loop: dict[asyncio.AbstractEventLoop, _Kept[T]] = {}
        _every.append(self)

    async def close_for_loop(self) -> int:
        """Closes the running loop's client, if it made one; how many it closed (0 or 1)."""
        kept = self._by_loop.pop(asyncio.get_running_loop(), None)
        if kept is None:
            return 0
        await self._close(kept.client)
        return 1

    def use(self) -> AbstractAsyncContextManager[T]:
        """`async with per_loop.use() as client`: the loop's own on a worker's main thread, else
        one made for the call and closed after it. Not a generator-based context manager: this
        runs on every cached read and upstream call, and a kept client's costs a dict lookup."""
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            kept = self._by_loop.get(loop)
            if kept is None:
                kept = self._by_loop[loop] = _Kept(self._factory())
            return kept
        return _ForTheCall(self._factory, self._close)


class _Kept[T]:
    """A loop's client, handed over as it is and left open."""

    __slots__ = ("client",)

    def __init__(self, client: T) -> None:
        self.client = client

    async def __aenter__(self) -> T:
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        return None


class _ForTheCall[T]:
    """A client made for one call and closed after it, whatever the call raised."""

    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._factory = factory
        self._close = close
        self._client: T | None = None

    async def __aenter__(self) -> T:
        self._client = self._factory()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._close(self._client)


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
