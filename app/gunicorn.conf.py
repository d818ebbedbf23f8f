"""Gunicorn settings, every one overridable by an environment variable of the same name.

GUNICORN_PROFILE picks the worker model for the workload (see the README):
  io    (default) Uvicorn workers on the ASGI app; one per core, since each multiplexes
        thousands of connections on its event loop while waiting on I/O.
  cpu   sync workers on the WSGI app; 2 x cores + 1, so one waits on I/O while another computes.
  mixed gthread workers on the WSGI app; cores + 1 processes x GUNICORN_THREADS threads.
"""

import faulthandler
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

# Prometheus multiprocess mode (core/metrics.py): every worker writes its metric values to files
# here and a scrape sums them. Set now, while only this file has run: prometheus_client reads it
# on import, and with preload_app the master imports it while loading Django. RAM-backed, like
# worker_tmp_dir; emptied when the master starts (on_starting).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = "/dev/shm/djstack-metrics"  # noqa: S108

# Cores this container may run on (affinity, not the host's count).
CORES = len(os.sched_getaffinity(0))

# max_requests: a worker is recycled after this many requests (below). A sync worker serves a
# few requests a second, so 1,000 is minutes of life. A Uvicorn worker serves hundreds: 1,000
# recycled it every ~7 s in make bench, and each recycle drains ~4 s with its listener closed,
# which cost 20% of the fan-out's throughput. 50,000 is over 5 min at that peak (150 req/s a
# worker), so drains take at most ~1% of a worker's time; the memory guard handles fast leaks.
PROFILES: dict[str, dict[str, Any]] = {
    "io": {
        "worker_class": "runtime.workers.UvicornWorker",
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
    sys.exit(f"GUNICORN_PROFILE must be one of {', '.join(PROFILES)}, got {PROFILE!r}")


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or PROFILES[PROFILE]["worker_class"]
workers = _int("GUNICORN_WORKERS", PROFILES[PROFILE]["workers"])
threads = _int("GUNICORN_THREADS", PROFILES[PROFILE]["threads"])
# Uvicorn workers and Gunicorn's own ASGI worker ("asgi") speak ASGI; sync and gthread, WSGI.
ASGI_WORKER = "uvicorn" in worker_class.lower() or worker_class.lower().endswith("asgi")
wsgi_app = "config.asgi:application" if ASGI_WORKER else "config.wsgi:application"

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Load Django once in the master and fork: workers share its pages copy-on-write.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() == "true"
# Recycle each worker after this many requests, bounding any slow leak; the jitter keeps
# the workers from all restarting at once. Uvicorn workers count them in the memory guard,
# which drains the worker first (post_fork below).
max_requests = _int("GUNICORN_MAX_REQUESTS", PROFILES[PROFILE]["max_requests"])
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 10)
# A worker silent this long is killed (WORKER TIMEOUT). Above any legitimate request: slow work
# belongs in Celery. Nginx's proxy_read_timeout (35s) sits above it, so Gunicorn acts first and
# its worker_abort hook logs where the request was stuck; Nginx answers the client a JSON 504.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, in-flight requests get this long to finish, the Uvicorn worker's drain
# (runtime/workers.py, GUNICORN_DRAIN_SECONDS 5s) included. Kubernetes' grace period is set above
# preStop + this value (k8s/).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 25)
# Longer than Nginx's upstream keepalive_timeout (4s): Nginx must close an idle connection
# first, or it may send a request down a socket Gunicorn is closing (a 502). Other clients get
# the usual 75s.
keepalive = _int("GUNICORN_KEEPALIVE", 75)
# The heartbeat file lives in RAM: a disk-backed /tmp can stall it and get workers killed.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - private to the container
# Connections queued in the kernel before Gunicorn accepts them.
backlog = _int("GUNICORN_BACKLOG", 2048)
# No access log here: Nginx logs every request as JSON, with the request ID, status, bytes and
# upstream time, so a second line per request would double the log volume and cost the workers
# the formatting (accesslog None also turns Uvicorn's access log off). Gunicorn's own log (worker
# boots, exits, timeouts) is JSON on stdout through runtime.gunicorn_logging.
accesslog = None
errorlog = "-"
logger_class = "runtime.gunicorn_logging.JsonLogger"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Memory guard (runtime/memory_guard.py): a worker whose RSS passes this many MB finishes its
# requests and is replaced; checked every GUNICORN_MEMORY_CHECK_EVERY requests; 0 turns it off.
# On top of max_requests, which bounds a slow leak by request count rather than by size.
memory_limit_mb = _int("GUNICORN_MEMORY_LIMIT_MB", 500)
memory_check_every = _int("GUNICORN_MEMORY_CHECK_EVERY", 10)
# Nginx is the only client; trust its X-Forwarded-* from any address on the private network.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "*")
proxy_allow_ips = forwarded_allow_ips
control_socket_disable = True  # Gunicorn 24+: no control socket in a read-only container.

log = logging.getLogger("gunicorn.error")


def on_starting(server: Any) -> None:
    # Files a previous master left (a restarted process in the same container or pod) would be
    # summed into this run's totals, under process IDs the new workers may reuse.
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def post_fork(server: Any, worker: Any) -> None:
    # With preload_app the master may hold sockets opened while loading Django; a child must
    # never share them, or two processes talk over one Postgres connection. Without preload,
    # Django is not loaded yet: there is nothing to close.
    if preload_app:
        from django.db import connections

        connections.close_all()

    from runtime import memory_guard

    # Uvicorn workers: max_requests (Gunicorn's count plus this worker's jitter, already in the
    # worker's Uvicorn config) goes to the memory guard, which drains the worker before it
    # stops; Uvicorn's own limit would close connections it has just accepted (a reset).
    recycle_after = 0
    uvicorn_config = getattr(worker, "config", None)
    limit = getattr(uvicorn_config, "limit_max_requests", None)
    if limit and limit < sys.maxsize:
        recycle_after = int(limit)
        uvicorn_config.limit_max_requests = None  # type: ignore[union-attr]
    memory_guard.arm(limit_mb=memory_limit_mb, every=memory_check_every, max_requests=recycle_after)


def post_worker_init(worker: Any) -> None:
    # Uvicorn's worker resets SIGABRT to the default action (its init_signals), so on WORKER
    # TIMEOUT it died without running worker_abort below: no stacks in the log. Install it
    # again, now that the worker's signals are set, and then exit at once: Gunicorn's own
    # handler raises SystemExit inside the stuck view, which Uvicorn answers with a 500; a
    # process that just ends closes the connection and Nginx answers its JSON 504.
    import signal

    def abort(signum: int, frame: Any) -> None:
        worker_abort(worker)
        sys.stderr.flush()
        os._exit(1)

    if signal.getsignal(signal.SIGABRT) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGABRT, abort)


def child_exit(server: Any, worker: Any) -> None:
    # In the master, for every worker that exited: drop its live-gauge files. Its counters and
    # histograms stay, so totals do not go backwards when a worker is replaced.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_abort(worker: Any) -> None:
    # SIGABRT from the arbiter on WORKER TIMEOUT: count it (gunicorn_worker_aborts_total, the
    # GunicornWorkerTimeout alert), then log every thread's stack before dying.
    try:
        from core.metrics import count_worker_abort

        count_worker_abort()
    except Exception:  # the stacks below matter more than the count
        log.exception("could not count the worker abort")
    frames = sys._current_frames()
    stacks = [
        f"Thread {thread_id}:\n{''.join(traceback.format_stack(frame))}"
        for thread_id, frame in frames.items()
    ]
    # One JSON line; `jq -r .stacks` prints them. faulthandler writes them raw to stderr as well.
    log.critical(
        "worker %s aborted (WORKER TIMEOUT); stacks in the stacks field",
        worker.pid,
        extra={"stacks": "\n".join(stacks)},
    )
    faulthandler.dump_traceback(all_threads=True)
