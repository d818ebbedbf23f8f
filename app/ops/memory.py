"""A running worker's memory growth over a window, by the line that allocated it (tracemalloc).

The measurement runs in the worker that serves the request: tracing starts (unless something
already traces), a snapshot is taken, the request awaits the window (under the Uvicorn workers
no thread is held meanwhile; a sync or gthread worker's thread is), a second snapshot is
compared with the first, and tracing stops again if it started here. What the worker allocated
in the window and still holds at its end is the growth: a leak shows as a line whose growth
follows the requests that reached this worker meanwhile.
"""

import asyncio
import linecache
import os
import socket
import threading
import tracemalloc
from dataclasses import dataclass
from time import monotonic

from core.errors import DomainError

# The window's bounds. At most 25 s: the request must be answered within Gunicorn's timeout (30 s:
# a sync or gthread worker holding a request past it is killed) and Nginx's proxy_read_timeout
# (35 s), with room for the two snapshots and their comparison.
MIN_SECONDS = 1
MAX_SECONDS = 25
MIN_LIMIT = 1
MAX_LIMIT = 50

# One measurement per process at a time: tracing is process-wide, and a second one could stop
# it under the first.
_MEASURING = threading.Lock()

# Allocations that are the measurement's own or Python's import machinery, not the worker's.
_NOT_THE_WORKER = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, __file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


class MeasurementInProgress(DomainError):
    status = 409
    code = "measurement_in_progress"


@dataclass(frozen=True)
class GrowthEntry:
    file: str
    line: int
    code: str
    size_diff: int
    count_diff: int
    size: int


@dataclass(frozen=True)
class MemoryGrowth:
    host: str  # the container's host name: a pod's name in Kubernetes
    pid: int
    seconds: float
    total_size_diff: int
    top: list[GrowthEntry]


def _snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces(_NOT_THE_WORKER)


def _growth(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, *, limit: int
) -> tuple[int, list[GrowthEntry]]:
    diffs = after.compare_to(before, "lineno")
    grown = sorted((d for d in diffs if d.size_diff > 0), key=lambda d: d.size_diff, reverse=True)
    top = []
    for diff in grown[:limit]:
        frame = diff.traceback[0]
        top.append(
            GrowthEntry(
                file=frame.filename,
                line=frame.lineno,
                code=linecache.getline(frame.filename, frame.lineno).strip(),
                size_diff=diff.size_diff,
                count_diff=diff.count_diff,
                size=diff.size,
            )
        )
    return sum(d.size_diff for d in diffs), top


async def memory_growth_measure(*, seconds: float, limit: int) -> MemoryGrowth:
    """The `limit` lines whose allocations still held grew most over `seconds`, in this process.

    Awaits the window, so an ASGI worker serves other requests meanwhile; the snapshots and their
    comparison run on a thread beside the event loop. Tracing slows every allocation of the
    process while it lasts.
    """
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be within {MIN_SECONDS}..{MAX_SECONDS}")
    if not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within {MIN_LIMIT}..{MAX_LIMIT}")
    if not _MEASURING.acquire(blocking=False):
        raise MeasurementInProgress(
            "A memory measurement is already running in this worker; retry when it ends."
        )
    started_here = False
    try:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            started_here = True
        before = await asyncio.to_thread(_snapshot)
        started = monotonic()
        await asyncio.sleep(seconds)
        after = await asyncio.to_thread(_snapshot)
        window = monotonic() - started
        total, top = await asyncio.to_thread(_growth, before, after, limit=limit)
    finally:
        if started_here:
            tracemalloc.stop()
        _MEASURING.release()
    return MemoryGrowth(
        host=socket.gethostname(),
        pid=os.getpid(),
        seconds=round(window, 3),
        total_size_diff=total,
        top=top,
    )
