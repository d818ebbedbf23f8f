"""Per-request counters and histograms added up in memory and written to prometheus_client's
multiprocess files by a thread of the process every FLUSH_SECONDS, not on every increment.

Writing a value to its file (prometheus_client's MmapedValue.inc) takes its lock, checks for a
fork and packs the value into the mapped file, and a request records several. Here an
increment of a family in `names` only adds under one lock. What was added reaches the files:

- every FLUSH_SECONDS, from a thread of each web worker (flushing_start);
- before a scrape renders (core.metrics.render), for the process answering it;
- when the process ends: interpreter exit (atexit), and before each os._exit of a web worker
  (gunicorn.conf.py's abort, runtime.workers).

A scrape sums the files, so it sees another live worker's requests about FLUSH_SECONDS late.
A worker killed outright loses about that much of its counts: SIGKILL, the OOM killer, or
Gunicorn's SIGKILL when a worker's exit waits on a stuck thread (a gthread worker's WORKER
TIMEOUT). Gauges, and every family not in `names`, are written at once, as prometheus_client
does.
"""

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import values

FLUSH_SECONDS = 1.0

log = logging.getLogger(__name__)
# Reentrant: a worker's SIGABRT handler flushes on the thread its signal interrupted, maybe
# inside an increment; the process then ends, so that increment never resumes.
_lock = threading.RLock()
# Values holding an amount not yet written.
_dirty: set[Any] = set()
_flusher: list[threading.Thread | None] = [None]


def _after_fork_in_child() -> None:
    # The parent's amounts are the parent's to write; its lock may have been held by a thread
    # that does not exist here, and so does its flushing thread.
    global _lock  # per process, by design
    _lock = threading.RLock()
    for value in _dirty:
        value._pending = 0.0
    _dirty.clear()
    _flusher[0] = None


# Held across a fork, so the child never copies a value half taken out of _dirty.
os.register_at_fork(
    before=lambda: _lock.acquire(),
    after_in_parent=lambda: _lock.release(),
    after_in_child=_after_fork_in_child,
)


def buffered(*, process_identifier: Callable[[], int], names: frozenset[str]) -> type:
    """prometheus_client's multiprocess value class, its increments of `names` buffered."""
    base = values.MultiProcessValue(process_identifier=process_identifier)  # type: ignore[no-untyped-call]

    class BufferedValue(base):  # type: ignore[misc,valid-type]
        def __init__(self, typ: str, metric_name: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(typ, metric_name, *args, **kwargs)
            self._buffered = metric_name in names
            self._pending = 0.0

        def inc(self, amount: float) -> None:
            if not self._buffered:
                super().inc(amount)
                return
            with _lock:
                self._pending += amount
                _dirty.add(self)

        def get(self) -> float:
            with _lock:  # a flush between the two reads would count its amount twice
                return float(super().get()) + self._pending

        def write_pending(self) -> None:
            """Under _lock: the amount added since the last write, into the file."""
            amount, self._pending = self._pending, 0.0
            super().inc(amount)

    return BufferedValue


def _all_buffered(values_: Sequence[Any]) -> bool:
    return all(getattr(value, "_buffered", False) for value in values_)


def counter(*counted: Any) -> Callable[[], None]:
    """A call that adds 1 to each labelled counter of `counted`: what their inc() records, under
    one lock when every value is buffered here. Otherwise (not multiprocess, or a family not
    buffered) through them."""
    counters = tuple(child._value for child in counted)
    if not _all_buffered(counters):

        def through() -> None:
            for child in counted:
                child.inc()

        return through

    def count() -> None:
        with _lock:
            for value in counters:
                value._pending += 1.0
            _dirty.update(counters)

    return count


def recorder(*, observed: Any, counted: Sequence[Any] = ()) -> Callable[[float], None]:
    """A call of one amount that observes it in the labelled histogram `observed` and adds 1 to
    each labelled counter of `counted`: what their observe() and inc() record, under one lock
    when every value is buffered here rather than a lock per value (a request records several).
    Otherwise (not multiprocess, or a family not buffered) through them."""
    counters = tuple(child._value for child in counted)
    total = observed._sum
    buckets = tuple(observed._buckets)
    if not _all_buffered([*counters, total, *buckets]):

        def through(amount: float) -> None:
            for child in counted:
                child.inc()
            observed.observe(amount)

        return through
    always = (*counters, total)
    # Ascending, +Inf last: the first bound at or above the amount is its bucket, as observe()
    # finds it.
    bounds = tuple(observed._upper_bounds)

    def record(amount: float) -> None:
        bucket = buckets[bisect_left(bounds, amount)]
        with _lock:
            for value in counters:
                value._pending += 1.0
            total._pending += amount
            bucket._pending += 1.0
            _dirty.update(always)
            _dirty.add(bucket)

    return record


def flush(*, wait: float | None = None) -> None:
    """Writes every amount this process added and has not written yet. `wait`: at most this
    long for another thread's flush, for a signal handler on a thread that may hold what that
    flush waits for; None: as long as it takes."""
    if not _lock.acquire(timeout=-1 if wait is None else wait):
        log.warning("metrics not written: another thread's flush held them past %ss", wait)
        return
    try:
        while _dirty:
            value = _dirty.pop()
            try:
                value.write_pending()
            except Exception:  # one value's file must not keep the others from theirs
                log.exception("could not write a metric's value to its file")
    finally:
        _lock.release()


atexit.register(flush)


def flushing_start() -> None:
    """This process's thread that writes every FLUSH_SECONDS: a web worker's, started as it
    begins (gunicorn.conf.py's post_worker_init), never the master's, which must fork holding
    no thread. The master adds nothing of its own (its warm-up's values are discarded,
    core.metrics.metrics_discarded); what a warm-up request outliving its budget adds later
    is written at the master's exit, if that runs atexit."""
    if _flusher[0] is None:
        thread = threading.Thread(target=_flush_every, name="metrics-flush", daemon=True)
        _flusher[0] = thread
        thread.start()


def _flush_every() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        flush()
