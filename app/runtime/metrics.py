"""The web worker's own metrics: its resident memory and the memory guard's limit, next to
core.metrics' request, query and cache metrics and served with them at /metrics
(runtime.middleware). Each worker refreshes them itself, at most every RSS_EVERY_SECONDS as it
finishes a request (refresh_worker_memory). Alerts: WebWorkerMemoryHigh, WorkerMemoryGrowing
(monitoring/rules/alerts.yml).
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
