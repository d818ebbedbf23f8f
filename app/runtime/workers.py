"""Gunicorn's Uvicorn worker, with a drain before it stops (GUNICORN_PROFILE=io).

Uvicorn stops a server by closing every connection without a request in progress at once. Nginx
keeps idle keep-alive connections to its upstream and may be sending a request down one at that
very moment: the request meets a closed socket, and since Nginx never retries a request it has
already sent with a non-idempotent method, the client of a POST gets a 502. Only the client side
of a keep-alive connection can close it without that race.

So a stopping worker here first drains, for at most DRAIN_SECONDS:
- it closes its listeners: new connections go to the other workers, or, when the whole server
  stops, are refused, which Nginx retries on another upstream even for a POST (nothing was sent);
- it answers every request with `Connection: close` (runtime.middleware), so Nginx drops each
  connection it uses after a complete response;
- it waits for Nginx to close the connections it leaves idle, which it does after its upstream
  keepalive_timeout (nginx/nginx.conf), set below DRAIN_SECONDS for that reason.
When no connection is left, or at the deadline, Uvicorn's own shutdown runs: in-flight requests
finish within Gunicorn's graceful_timeout, as before.

WORKER TIMEOUT for sync code: the heartbeat comes from the event loop, which a sync view stuck
on its own thread does not stop. Each tick also runs the request watchdog (runtime/asgi.py), which
treats a request thread busy past Gunicorn's timeout the way the arbiter treats a silent worker:
its stack is logged, the abort counted, the client answered 504, and the worker drains and is
replaced. A thread cannot be killed, so the process ends with os._exit once the server stopped.

The drain starts on SIGTERM (Gunicorn's graceful stop, `docker stop`, Kubernetes after preStop,
the old workers of a SIGHUP reload) and when the memory guard recycles the worker
(runtime/memory_guard.py: over its memory limit, or after max_requests).
"""

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker as _UvicornWorker

from runtime import config
from runtime.http_protocol import HeadWithBodyProtocol

log = logging.getLogger(__name__)

# GUNICORN_DRAIN_SECONDS (runtime/config.py says why it is above Nginx's keepalive_timeout).
DRAIN_SECONDS = config.DRAIN_SECONDS

# How often a live worker touches Gunicorn's heartbeat file (the file is in RAM: /dev/shm).
HEARTBEAT_SECONDS = 1

_server: "DrainingServer | None" = None
# Called at every tick of the event loop (the request watchdog); each returns nothing.
_tick_callbacks: list[Callable[[], None]] = []
# Request threads found stuck: the process cannot end normally while they run.
_stuck_threads: set[int] = set()


def on_tick(callback: Callable[[], None]) -> None:
    """Runs callback on the event loop at each tick of Uvicorn's main loop (ten a second)."""
    _tick_callbacks.append(callback)


def request_timeout() -> float | None:
    """Gunicorn's timeout, when this process is a worker of ours (None in tests, other workers)."""
    return _server.request_timeout if _server is not None else None


def stuck_thread_mark(thread_id: int) -> None:
    _stuck_threads.add(thread_id)


def draining() -> bool:
    """True while this process's server drains: responses should close their connection."""
    return _server is not None and _server.drain_deadline is not None


def current() -> "DrainingServer | None":
    """The draining-capable server this worker runs, if any (None in tests and other workers)."""
    return _server


class DrainingServer(Server):
    drain_deadline: float | None = None
    request_timeout: float | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        global _server  # one server per worker process
        _server = self
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def drain(self, reason: str) -> None:
        """Starts the drain on the event loop's next turn; safe from any thread or a signal
        handler (the memory guard may run in a sync view's thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_drain, reason)

    def _start_drain(self, reason: str) -> None:
        if self.drain_deadline is not None or self.should_exit:
            return
        self.drain_deadline = time.monotonic() + DRAIN_SECONDS
        for listener in self.servers:
            listener.close()  # accepted connections are still served
        log.info(
            "draining before stop (%s): no new connections, Connection: close on every "
            "response, waiting up to %.0fs for %d open connections to close",
            reason,
            DRAIN_SECONDS,
            len(self.server_state.connections),
            extra={"reason": reason, "open": len(self.server_state.connections)},
        )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first_sigterm = sig == signal.SIGTERM and self.drain_deadline is None
        if first_sigterm and self.started and not self.should_exit:
            # Kept, so that once the server has stopped the process still ends on SIGTERM.
            self._captured_signals.append(sig)
            self.drain("SIGTERM")
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        for callback in _tick_callbacks:
            try:
                callback()
            except Exception:  # the heartbeat below must go on whatever a callback does
                log.exception("tick callback failed")
        if self.drain_deadline is not None and not self.should_exit:
            left = len(self.server_state.connections)
            if not left or time.monotonic() >= self.drain_deadline:
                log.info(
                    "drained: %s",
                    "every connection closed by its client"
                    if not left
                    else f"deadline reached with {left} connections open",
                    extra={"open": left},
                )
                self.should_exit = True
        return await super().on_tick(counter)


def plain_sockets(listeners: list[Any]) -> list[socket.socket]:
    """The socket.socket inside each of Gunicorn's listener wrappers, for Uvicorn to serve.

    uvloop closes a listener's descriptor itself when the server closes (the drain, shutdown),
    then detaches a socket.socket so its descriptor is not closed again, but calls close() on
    any other object, such as Gunicorn's wrapper: the same descriptor number closed twice. In
    between, another thread of the worker may have been given that number for a new socket (a
    request connecting to PgBouncer in a freshly forked worker): that socket was closed under
    it, and the request waited out its connect_timeout and answered 503.
    """
    return [getattr(listener, "sock", listener) for listener in listeners]


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]  # untyped upstream
    """uvicorn_worker.UvicornWorker with DrainingServer, a heartbeat every second, and a
    response's head sent with its body (runtime/http_protocol.py)."""

    CONFIG_KWARGS = {**_UvicornWorker.CONFIG_KWARGS, "http": HeadWithBodyProtocol}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Upstream touches Gunicorn's heartbeat file every timeout/2 (15s), so a worker whose
        # event loop stopped was killed 15 to 30s later. Every second (Uvicorn's tick checks once
        # a second anyway), WORKER TIMEOUT means what it says: silent for `timeout`.
        self.config.timeout_notify = HEARTBEAT_SECONDS

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        # The configured timeout (the arbiter hands workers half of it, as their beat period).
        server.request_timeout = float(self.cfg.timeout) if self.cfg.timeout else None
        self._install_sigquit_handler()
        await server.serve(sockets=plain_sockets(self.sockets))
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        if _stuck_threads:
            # Interpreter shutdown would join the stuck threads forever (and Gunicorn would kill
            # the worker at graceful_timeout): the server has stopped, so end here.
            log.warning(
                "exiting with %d request thread(s) still stuck", len(_stuck_threads),
                extra={"stuck": len(_stuck_threads)},
            )  # fmt: skip
            from core.metric_values import flush

            flush()  # os._exit skips atexit, where the last requests' metrics are written
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
