"""Replace a Gunicorn worker whose memory has grown past a limit, without failing a request.

Gunicorn's post_fork hook arms the guard in each worker (app/gunicorn.conf.py). Every `every`
requests the diagnostics middleware calls request_finished(), which reads the worker's RSS from
/proc/self/statm; past the limit it logs a warning and sends SIGTERM to its own process. That is
Gunicorn's graceful stop for one worker, whatever the worker class:
  - UvicornWorker: Uvicorn's handler sets should_exit; the server stops accepting, lets the
    in-flight requests finish (closing each keep-alive connection after its response), then
    the process exits on the re-raised SIGTERM;
  - sync / gthread: Gunicorn's handler clears `alive`; the worker finishes what it is serving.
The arbiter sees the worker gone and forks a replacement. Unarmed (tests, manage.py, Celery), the
guard does nothing at all.
"""

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MIB = 1024 * 1024
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
    pid: int = field(default_factory=os.getpid)
    requests: int = 0
    tripped: bool = False


_guard: Guard | None = None


def arm(*, limit_mb: int, every: int, shutdown: Callable[[], None] = terminate_self) -> None:
    """Called in each Gunicorn worker after fork; a limit of 0 leaves the guard off."""
    global _guard  # one guard per worker process, by design
    _guard = Guard(limit_mb, max(1, every), shutdown) if limit_mb > 0 else None


def disarm() -> None:
    global _guard  # one guard per worker process, by design
    _guard = None


def request_finished() -> None:
    """Counts a request; every `every` requests compares RSS with the limit. Cheap when unarmed."""
    guard = _guard
    if guard is None or guard.tripped:
        return
    guard.requests += 1
    if guard.requests % guard.every:
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

    MEMORY_RECYCLES.inc()
    guard.shutdown()
