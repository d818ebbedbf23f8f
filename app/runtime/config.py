"""What Gunicorn and the serving runtime read from the environment, read here and only here.

app/gunicorn.conf.py runs before Django is loaded, so these cannot be Django settings; the
runtime's modules (the drain, the metrics' memory limit) import the same values from here
rather than reading the environment again with defaults of their own. Everything else the
app reads comes from config/settings.py.

GUNICORN_PROFILE picks the worker model for the workload (see the README):
  io    (default) Uvicorn workers on the ASGI app; one per core, since each multiplexes
        thousands of connections on its event loop while waiting on I/O.
  cpu   sync workers on the WSGI app; 2 x cores + 1, so one waits on I/O while another computes.
  mixed gthread workers on the WSGI app; cores + 1 processes x GUNICORN_THREADS threads.
"""

import math
import os
from typing import Any

_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# A value read here that Gunicorn cannot start with: gunicorn.conf.py refuses to start with
# these, each naming its variable. Only Gunicorn: every Django process imports this module
# (through the runtime's middleware), and a Celery worker or a migration must not fail for a
# setting only the web server reads. Elsewhere the default stands in for the bad value.
INVALID: list[str] = []


def _number[N: (int, float)](name: str, default: N) -> N:
    value = os.environ.get(name) or ""
    try:
        return type(default)(value) if value else default
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        INVALID.append(f"{name} must be {kind}, got {value!r}")
        return default


_METRICS_DIR_DEFAULT = "/dev/shm/djstack-metrics"  # noqa: S108


def use_multiprocess_metrics() -> str:
    """Prometheus multiprocess mode (core/metrics.py): every worker writes its metric values to
    files in GUNICORN_METRICS_DIR and a scrape sums them. Gunicorn's config calls it first, while
    only that file has run: prometheus_client reads PROMETHEUS_MULTIPROC_DIR on import, and with
    preload_app the master imports it while loading Django. RAM-backed, like worker_tmp_dir;
    emptied when the master starts (on_starting).

    Set in the master's own environment, which only its workers inherit, never in the
    container's: a process started beside them (manage.py, python -c, django-admin) would write
    its own files there, summed into web's /metrics and, never marked dead by Gunicorn's
    child_exit, its gauges (a replica's lag, its serving flag) kept until web restarts; a Celery
    worker would switch to files nobody empties."""
    directory = os.environ.get("GUNICORN_METRICS_DIR") or _METRICS_DIR_DEFAULT
    os.environ[_MULTIPROC_DIR] = directory
    return directory


def multiproc_dir() -> str | None:
    """The multiprocess metrics directory, when this process is (or was forked from) Gunicorn's
    master; None elsewhere (tests, manage.py, Celery): the in-process registry is used."""
    return os.environ.get(_MULTIPROC_DIR) or None


# SERVER_RUNTIME, the way back. "pooled" (the default): the io profile serves with this package's
# ASGI handler (runtime/asgi.py: reused request threads, inline middleware, the request watchdog)
# and Uvicorn worker (runtime/workers.py: the drain, the heartbeat every second). Both rely on
# private internals of Django, asgiref and Uvicorn (tests/app/runtime/test_internals.py names
# them); "stock" serves with Django's own ASGIHandler and uvicorn_worker.UvicornWorker as
# released, for an upgrade that changed those internals.
SERVER_RUNTIMES = ("pooled", "stock")
SERVER_RUNTIME = os.environ.get("SERVER_RUNTIME") or "pooled"
if SERVER_RUNTIME not in SERVER_RUNTIMES:
    INVALID.append(
        f"SERVER_RUNTIME must be one of {', '.join(SERVER_RUNTIMES)}, got {SERVER_RUNTIME!r}"
    )
    SERVER_RUNTIME = "pooled"
POOLED = SERVER_RUNTIME == "pooled"

# Cores this container may run on (affinity, not the host's count).
CORES = len(os.sched_getaffinity(0))

# max_requests: a worker is recycled after this many requests (below). The rule: a worker lives
# minutes at its peak rate, so the drain each recycle costs (its listener closed meanwhile) is a
# small share of its time. A sync worker serves a few requests a second, so 1,000 is minutes; a
# Uvicorn worker serves hundreds, so it gets 50,000 (docs/BENCHMARKS.md gives the cost of a
# lower limit). The memory guard, not this count, handles fast leaks.
PROFILES: dict[str, dict[str, Any]] = {
    "io": {
        "worker_class": "runtime.workers.UvicornWorker"
        if POOLED
        else "uvicorn_worker.UvicornWorker",
        "workers": CORES,
        "threads": 1,
        "max_requests": 50_000,
    },
    "cpu": {"worker_class": "sync", "workers": 2 * CORES + 1, "threads": 1, "max_requests": 1000},
    "mixed": {
        "worker_class": "gthread",
        "workers": CORES + 1,
        "threads": 4,
        "max_requests": 1000,
    },
}
PROFILE = os.environ.get("GUNICORN_PROFILE", "io")
if PROFILE not in PROFILES:
    INVALID.append(f"GUNICORN_PROFILE must be one of {', '.join(PROFILES)}, got {PROFILE!r}")
    PROFILE = "io"

WORKER_CLASS: str = os.environ.get("GUNICORN_WORKER_CLASS") or PROFILES[PROFILE]["worker_class"]
WORKERS = _number("GUNICORN_WORKERS", PROFILES[PROFILE]["workers"])
THREADS = _number("GUNICORN_THREADS", PROFILES[PROFILE]["threads"])
# The io profile's request threads per worker (runtime/asgi.py, pooled runtime): how many of a
# worker's requests run sync code (the ORM) at once, each thread with its own database
# connections; a request that never leaves the event loop takes none. Chosen by make bench
# (scenario 1's request threads row).
REQUEST_THREADS_DEFAULT = 64
REQUEST_THREADS = _number("GUNICORN_REQUEST_THREADS", REQUEST_THREADS_DEFAULT)
if REQUEST_THREADS < 1:
    INVALID.append(f"GUNICORN_REQUEST_THREADS must be at least 1, got {REQUEST_THREADS}")
    REQUEST_THREADS = REQUEST_THREADS_DEFAULT
# The longest the first sync call of a request that may write (not GET, HEAD or OPTIONS) waits
# for a request thread; past it the request is answered 503 server_busy, having run nothing
# there. Nginx's proxy_read_timeout (35 s) less GUNICORN_TIMEOUT (30 s, the most one sync call
# runs before the watchdog answers): a request never queues into the time Nginx would cut it
# in, after its write committed.
THREAD_WAIT_SECONDS = _number("GUNICORN_THREAD_WAIT_SECONDS", 5.0)
# Finite: the wait is an event-loop timer, and its Retry-After a whole number of seconds.
if not 0 < THREAD_WAIT_SECONDS < math.inf:
    INVALID.append(
        f"GUNICORN_THREAD_WAIT_SECONDS must be a finite number above 0, got {THREAD_WAIT_SECONDS:g}"
    )
    THREAD_WAIT_SECONDS = 5.0
BIND = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
PRELOAD = os.environ.get("GUNICORN_PRELOAD", "true").lower() == "true"
# With preload: build what workers would each build lazily and gc.freeze() before the fork
# (config/preload.py). Off only to measure what it saves (make bench, scenario 5).
PRELOAD_FREEZE = os.environ.get("GUNICORN_PRELOAD_FREEZE", "true").lower() == "true"
# With PRELOAD_FREEZE: the GET paths the master serves, each twice, before the fork
# (config/preload.py), comma-separated; unset or empty: the default; "none": no request.
_WARM_DEFAULT = "/api/openapi.json,/api/products"  # demo-shop
# demo-shop: else _WARM_DEFAULT = "/api/openapi.json"
_WARM_PATHS = os.environ.get("GUNICORN_PRELOAD_WARM_PATHS", "").strip() or _WARM_DEFAULT
PRELOAD_WARM_PATHS = tuple(
    path.strip()
    for path in _WARM_PATHS.split(",")
    if path.strip() and _WARM_PATHS.lower() != "none"
)
if any(not path.startswith("/") for path in PRELOAD_WARM_PATHS):
    INVALID.append(f"GUNICORN_PRELOAD_WARM_PATHS: each path starts with /, got {_WARM_PATHS!r}")
    PRELOAD_WARM_PATHS = ()
MAX_REQUESTS = _number("GUNICORN_MAX_REQUESTS", PROFILES[PROFILE]["max_requests"])
MAX_REQUESTS_JITTER = _number("GUNICORN_MAX_REQUESTS_JITTER", MAX_REQUESTS // 10)
TIMEOUT = _number("GUNICORN_TIMEOUT", 30)
# Nginx's proxy_read_timeout for web (nginx/nginx.conf; tests/app/test_gunicorn_conf.py keeps
# the two equal). A request that may write waits for a thread, then runs: if both together can
# outlast it, Nginx answers 504 to a write that commits afterwards.
NGINX_READ_TIMEOUT = 35
if PROFILE == "io" and POOLED:
    if TIMEOUT <= 0:
        # Gunicorn reads 0 as no timeout: the request watchdog would never answer a stuck call.
        INVALID.append(
            f"GUNICORN_TIMEOUT must be above 0 with request threads, got {TIMEOUT}: with no "
            "timeout a write's sync code runs past Nginx's proxy_read_timeout "
            f"({NGINX_READ_TIMEOUT} s), and could commit after Nginx answered 504"
        )
    elif THREAD_WAIT_SECONDS + TIMEOUT > NGINX_READ_TIMEOUT:
        INVALID.append(
            f"GUNICORN_THREAD_WAIT_SECONDS ({THREAD_WAIT_SECONDS:.12g}) plus GUNICORN_TIMEOUT "
            f"({TIMEOUT}) must not exceed Nginx's proxy_read_timeout ({NGINX_READ_TIMEOUT} s): "
            "a write would wait into the time Nginx gives it, and could commit after Nginx "
            "answered 504"
        )
GRACEFUL_TIMEOUT = _number("GUNICORN_GRACEFUL_TIMEOUT", 25)
KEEPALIVE = _number("GUNICORN_KEEPALIVE", 75)
BACKLOG = _number("GUNICORN_BACKLOG", 2048)
LOG_LEVEL = os.environ.get("GUNICORN_LOG_LEVEL", "info")
FORWARDED_ALLOW_IPS = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "*")
# The memory guard's limit (MB; 0: off) and how often it checks; also exported next to each
# worker's RSS (runtime/metrics.py) for WebWorkerMemoryHigh.
MEMORY_LIMIT_MB = _number("GUNICORN_MEMORY_LIMIT_MB", 500)
MEMORY_CHECK_EVERY = _number("GUNICORN_MEMORY_CHECK_EVERY", 10)
# A stopping Uvicorn worker's drain (runtime/workers.py): above Nginx's upstream
# keepalive_timeout (4s), so by then Nginx has closed every connection it left idle and the
# worker never closes one under a request. Counts against graceful_timeout.
DRAIN_SECONDS = _number("GUNICORN_DRAIN_SECONDS", 5.0)
