"""Replace a Gunicorn worker whose memory has grown past a limit, without failing a request.

Gunicorn's post_fork hook arms the guard in each worker (app/gunicorn.conf.py). Every `every`
requests the diagnostics middleware calls request_finished(), which reads the worker's RSS from
/proc/self/statm; past the limit it logs a warning and has the worker replaced:

- sync / gthread workers: SIGTERM to itself at once. Gunicorn's handler clears `alive`; the
  worker finishes what it is serving, accepting nothing more, and exits.
- Uvicorn workers: SIGTERM alone is not enough. Uvicorn's handler only sets should_exit, which
  its main loop reads up to 0.1 s later; meanwhile the worker keeps accepting connections, and
  its shutdown then closes every connection without a request in progress, including ones it
  has just accepted whose request it has not read yet: that client gets a connection reset
  (with a plain SIGTERM, 3 of 120 requests in the scenario of test_gunicorn_diagnostics.py). So
  the guard first closes the worker's listeners (the kernel queue stays with the other workers and
  the master), answers every request of the next DRAIN_SECONDS with `Connection: close` so
  keep-alive clients such as Nginx drop their connections after a complete response, and only
  then sends the SIGTERM, for Uvicorn's shutdown to finish whatever is still in flight.

The arbiter sees the worker exit and forks a replacement. Unarmed (tests, manage.py, Celery), the
guard does nothing at all.

Recycling after GUNICORN_MAX_REQUESTS (plus jitter) takes the same path for Uvicorn workers:
post_fork (app/gunicorn.conf.py) turns Uvicorn's own limit_max_requests off and hands the count
to the guard as `max_requests`. Uvicorn's limit stops the server the same abrupt way (its main
loop sees the count, then closes every idle connection, just-accepted ones included), which
under load reset a few requests in a thousand: the POSTs among them reached the client as 502s,
since Nginx never retries a POST it has sent (tests/stack/test_faults.py).
"""

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# How long a Uvicorn worker over the limit keeps serving its open connections, closing each after
# its next response, before it stops. Longer lets more keep-alive connections close cleanly.
DRAIN_SECONDS = 1.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size: the second field of /proc/self/statm, in pages."""
    # Opened each time: a descriptor kept open across fork would still read the parent's file.
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def exceeds(rss: int, limit_mb: int) -> bool:
    """The decision: over the limit, where a limit of 0 (or less) means no limit."""
    return limit_mb > 0 and rss > limit_mb * MIB


def terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Guard:
    limit_mb: int
    every: int
    shutdown: Callable[[], None]
    max_requests: int = 0
    pid: int = field(default_factory=os.getpid)
    requests: int = 0
    tripped: bool = False
    draining: bool = False


_guard: Guard | None = None


def arm(
    *,
    limit_mb: int,
    every: int,
    shutdown: Callable[[], None] = terminate_self,
    max_requests: int = 0,
) -> None:
    """Called in each Gunicorn worker after fork; a memory limit and max_requests both 0 leave
    the guard off. max_requests > 0: the worker is recycled after that many requests."""
    global _guard  # one guard per worker process, by design
    armed = limit_mb > 0 or max_requests > 0
    _guard = Guard(limit_mb, max(1, every), shutdown, max(0, max_requests)) if armed else None


def disarm() -> None:
    global _guard  # one guard per worker process, by design
    _guard = None


def _uvicorn_server() -> Any:
    """The Uvicorn server this process runs, if any: its SIGTERM handler is a bound method of it."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    if type(server).__module__ == "uvicorn.server" and hasattr(server, "servers"):
        return server
    return None


def _recycle(guard: Guard) -> None:
    server = _uvicorn_server()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if server is None or loop is None:
        guard.shutdown()
        return
    for listener in server.servers:
        listener.close()  # stop accepting; connections already accepted are still served
    guard.draining = True
    loop.call_later(DRAIN_SECONDS, guard.shutdown)


def request_finished() -> bool:
    """Counts a request; every `every` requests compares RSS with the limit. Cheap when unarmed.

    True while the worker drains before it stops: the response should close its connection.
    """
    guard = _guard
    if guard is None:
        return False
    if guard.tripped:
        return guard.draining
    guard.requests += 1
    if guard.max_requests and guard.requests >= guard.max_requests:
        if guard.pid != os.getpid():
            return False
        guard.tripped = True
        log.info(
            "max requests reached: worker %s served %d; finishing its requests and exiting, "
            "Gunicorn starts a replacement",
            guard.pid,
            guard.requests,
            extra={"requests_seen": guard.requests, "max_requests": guard.max_requests},
        )
        from core.metrics import MEMORY_RECYCLES

        MEMORY_RECYCLES.labels("max_requests").inc()
        _recycle(guard)
        return guard.draining
    if guard.limit_mb <= 0 or guard.requests % guard.every:
        return False
    if guard.pid != os.getpid():
        return False  # a process forked from the worker: only the worker itself may be recycled
    rss = rss_bytes()
    if not exceeds(rss, guard.limit_mb):
        return False
    guard.tripped = True
    log.warning(
        "memory limit exceeded: worker %s has %d MB resident, limit %d MB; finishing its "
        "requests and exiting, Gunicorn starts a replacement",
        guard.pid,
        rss // MIB,
        guard.limit_mb,
        extra={
            "rss_mb": round(rss / MIB, 1),
            "limit_mb": guard.limit_mb,
            "requests_seen": guard.requests,
        },
    )
    from core.metrics import MEMORY_RECYCLES

    MEMORY_RECYCLES.labels("rss").inc()
    _recycle(guard)
    return guard.draining
