"""The web worker's own metrics: its resident memory and the memory guard's limit, and its
request threads, next to core.metrics' request, query and cache metrics and served with them at
/metrics (runtime.middleware). Each worker refreshes them itself: its memory at most every
RSS_EVERY_SECONDS as it finishes a request (refresh_worker_memory), its threads at the ticks of
its event loop when they change (observe_request_threads). Alerts: WebWorkerMemoryHigh,
WorkerMemoryGrowing, WebRequestThreadsBusy (monitoring/rules/alerts.yml).
"""

import os
from time import perf_counter

from prometheus_client import Gauge

from core.metrics import WORKER_ABORTS
from runtime import config, procfs

# One series per live worker (label pid); a worker's files go when it exits (child_exit).
WORKER_RSS = Gauge(
    "gunicorn_worker_rss_bytes",
    "Resident memory of each web worker, as the memory guard reads it.",
    ["kind"],
    multiprocess_mode="liveall",
)
WORKER_MEMORY_LIMIT = Gauge(
    "gunicorn_worker_memory_limit_bytes",
    "GUNICORN_MEMORY_LIMIT_MB in bytes (0: no limit): WebWorkerMemoryHigh compares with it.",
    ["kind"],
    multiprocess_mode="livemax",
)
# Each worker's request threads (runtime.asgi's pool), summed over the live workers: how many it
# may lend, how many are lent (a request keeps its thread to its end), and how many requests wait
# for one. Alert WebRequestThreadsBusy: nearly all lent, before waits turn into 503s. Labelled,
# as the memory gauges: a metric with no labels opens its file when it is built, which is in
# the preloading master, before its metrics directory exists, and would leave a file of the
# master's own; a labelled one only when a worker first sets it.
REQUEST_THREADS = Gauge(
    "gunicorn_request_threads",
    "Request threads the web workers may lend (GUNICORN_REQUEST_THREADS each).",
    ["kind"],
    multiprocess_mode="livesum",
)
REQUEST_THREADS_LENT = Gauge(
    "gunicorn_request_threads_lent",
    "Request threads lent to a request, which keeps its thread until it ends.",
    ["kind"],
    multiprocess_mode="livesum",
)
REQUEST_THREAD_WAITERS = Gauge(
    "gunicorn_request_thread_waiters",
    "Requests waiting for a request thread, all of their worker's being lent.",
    ["kind"],
    multiprocess_mode="livesum",
)
# What this worker last wrote: the gauges' files are written only when a figure changes.
_threads_written: tuple[int, int, int] | None = None
# A worker re-reads its RSS (one small /proc read) at most this often: a fraction of the scrape
# interval (15s), and nothing per request in between.
RSS_EVERY_SECONDS = 5.0
_MEMORY_LIMIT_BYTES = config.MEMORY_LIMIT_MB * 1024 * 1024
_rss_next = 0.0


def _rss_now() -> None:
    global _rss_next
    _rss_next = 0.0


# A worker reads its own memory on its first request: a deadline set by a request its master
# served before the fork (config/preload.py) would hide the worker's memory until it passed.
os.register_at_fork(after_in_child=_rss_now)


def refresh_worker_memory() -> None:
    """After each request: the worker's memory, re-read once RSS_EVERY_SECONDS have passed."""
    if perf_counter() >= _rss_next:
        observe_worker_memory()


def observe_worker_memory() -> None:
    """This worker's resident memory and limit, for WebWorkerMemoryHigh and WorkerMemoryGrowing."""
    global _rss_next  # per process, by design
    _rss_next = perf_counter() + RSS_EVERY_SECONDS
    WORKER_RSS.labels("web").set(procfs.rss_bytes())  # as the memory guard reads it
    WORKER_MEMORY_LIMIT.labels("web").set(_MEMORY_LIMIT_BYTES)
    # The abort counter exported at 0 before the first abort: increase() needs the 0 -> 1 step.
    WORKER_ABORTS.labels("timeout")
    WORKER_ABORTS.labels("request_thread")


def observe_request_threads(*, size: int, lent: int, waiting: int) -> None:
    """This worker's request threads, at each tick of its event loop (runtime.asgi)."""
    global _threads_written  # per process, by design
    figures = (size, lent, waiting)
    if figures == _threads_written:
        return
    _threads_written = figures
    REQUEST_THREADS.labels("web").set(size)
    REQUEST_THREADS_LENT.labels("web").set(lent)
    REQUEST_THREAD_WAITERS.labels("web").set(waiting)
