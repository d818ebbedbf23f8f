"""Replace a Gunicorn worker whose memory has grown past a limit, without failing a request.

Gunicorn's post_fork hook arms the guard in each worker (app/gunicorn.conf.py). Every `every`
requests the diagnostics middleware calls request_finished(), which reads the worker's RSS from
/proc/self/statm; past the limit it logs a warning and has the worker replaced:

- sync / gthread workers: SIGTERM to itself at once. Gunicorn's handler clears `alive`; the
  worker finishes what it is serving, accepting nothing more, and exits.
- Uvicorn workers (runtime/workers.py): the server drains first, closing its listeners and its
  connections the race-free way (each after a complete response with `Connection: close`, or by
  Nginx once idle), then stops as on SIGTERM. A plain SIGTERM to a Uvicorn worker used to close
  every idle connection at once, including just-accepted ones whose request it had not read yet:
  that client got a connection reset (the stack test
  tests/stack/test_diagnostics.py::test_memory_guard_replaces_workers_without_failing_a_request
  replaces workers under load and counts none).

The arbiter sees the worker exit and forks a replacement. Unarmed (tests, manage.py, Celery), the
guard does nothing at all.

Recycling after GUNICORN_MAX_REQUESTS (plus jitter) takes the same path for Uvicorn workers:
post_fork (app/gunicorn.conf.py) turns Uvicorn's own limit_max_requests off and hands the count
to the guard as `max_requests`. Uvicorn's limit stops the server without a drain, which under
load resets requests in flight: the POSTs among them reach the client as 502s, since
Nginx never retries a POST it has sent (tests/stack/test_faults.py).
"""

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime import workers
from runtime.procfs import rss_bytes

log = logging.getLogger(__name__)

MIB = 1024 * 1024


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


def _recycle(guard: Guard, reason: str) -> None:
    server = workers.current()
    if server is None:
        guard.shutdown()  # sync and gthread workers: Gunicorn's own graceful stop
    else:
        server.drain(reason)


def request_finished() -> bool:
    """Counts a request; every `every` requests compares RSS with the limit. Cheap when unarmed.

    True while the worker drains before it stops: the response should close its connection.
    """
    _count()
    return workers.draining()


def _count() -> None:
    guard = _guard
    if guard is None or guard.tripped:
        return
    guard.requests += 1
    if guard.max_requests and guard.requests >= guard.max_requests:
        if guard.pid != os.getpid():
            return
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
        _recycle(guard, "max requests")
        return
    if guard.limit_mb <= 0 or guard.requests % guard.every:
        return
    if guard.pid != os.getpid():
        return  # a process forked from the worker: only the worker itself may be recycled
    rss = rss_bytes()
    if not exceeds(rss, guard.limit_mb):
        return
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
    _recycle(guard, "memory limit")
