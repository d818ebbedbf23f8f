"""Gunicorn settings, every one overridable by an environment variable of the same name.

The values, and the worker profiles (GUNICORN_PROFILE: io, cpu, mixed), come from
runtime/config.py: the one place Gunicorn's variables are read, which the runtime imports too.
"""

import faulthandler
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

# Not `config`: Gunicorn would take a global of that name for its own --config setting.
from runtime import config as runtime_config

if runtime_config.INVALID:
    sys.exit("\n".join(runtime_config.INVALID))

METRICS_DIR = runtime_config.use_multiprocess_metrics()

worker_class = runtime_config.WORKER_CLASS
workers = runtime_config.WORKERS
threads = runtime_config.THREADS
# Uvicorn workers and Gunicorn's own ASGI worker ("asgi") speak ASGI; sync and gthread, WSGI.
ASGI_WORKER = "uvicorn" in worker_class.lower() or worker_class.lower().endswith("asgi")
wsgi_app = "config.asgi:application" if ASGI_WORKER else "config.wsgi:application"

bind = runtime_config.BIND
# Load Django once in the master and fork: workers share its pages copy-on-write.
preload_app = runtime_config.PRELOAD
# Recycle each worker after this many requests, bounding any slow leak; the jitter keeps
# the workers from all restarting at once. Uvicorn workers count them in the memory guard,
# which drains the worker first (post_fork below).
max_requests = runtime_config.MAX_REQUESTS
max_requests_jitter = runtime_config.MAX_REQUESTS_JITTER
# A worker silent this long is killed (WORKER TIMEOUT). Above any legitimate request: slow work
# belongs in Celery. Nginx's proxy_read_timeout (35s) sits above it, so Gunicorn acts first and
# its worker_abort hook logs where the request was stuck; Nginx answers the client a JSON 504.
timeout = runtime_config.TIMEOUT
# On SIGTERM, in-flight requests get this long to finish, the Uvicorn worker's drain
# (runtime/workers.py, GUNICORN_DRAIN_SECONDS 5s) included. Kubernetes' grace period is set above
# preStop + this value (k8s/).
graceful_timeout = runtime_config.GRACEFUL_TIMEOUT
# Longer than Nginx's upstream keepalive_timeout (4s): Nginx must close an idle connection
# first, or it may send a request down a socket Gunicorn is closing (a 502). Other clients get
# the usual 75s.
keepalive = runtime_config.KEEPALIVE
# The heartbeat file lives in RAM: a disk-backed /tmp can stall it and get workers killed.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - private to the container
# Connections queued in the kernel before Gunicorn accepts them.
backlog = runtime_config.BACKLOG
# No access log here: Nginx logs every request as JSON, with the request ID, status, bytes and
# upstream time, so a second line per request would double the log volume and cost the workers
# the formatting (accesslog None also turns Uvicorn's access log off). Gunicorn's own log (worker
# boots, exits, timeouts) is JSON on stdout through runtime.gunicorn_logging.
accesslog = None
errorlog = "-"
logger_class = "runtime.gunicorn_logging.JsonLogger"
loglevel = runtime_config.LOG_LEVEL
# Memory guard (runtime/memory_guard.py): a worker whose RSS passes this many MB finishes its
# requests and is replaced; checked every GUNICORN_MEMORY_CHECK_EVERY requests; 0 turns it off.
# On top of max_requests, which bounds a slow leak by request count rather than by size.
memory_limit_mb = runtime_config.MEMORY_LIMIT_MB
memory_check_every = runtime_config.MEMORY_CHECK_EVERY
# Nginx is the only client; trust its X-Forwarded-* from any address on the private network.
forwarded_allow_ips = runtime_config.FORWARDED_ALLOW_IPS
proxy_allow_ips = forwarded_allow_ips
control_socket_disable = True  # Gunicorn 24+: no control socket in a read-only container.

log = logging.getLogger("gunicorn.error")


def on_starting(server: Any) -> None:
    # Files a previous master left (a restarted process in the same container or pod) would be
    # summed into this run's totals, under process IDs the new workers may reuse.
    directory = Path(METRICS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def on_exit(server: Any) -> None:
    # The master's warm-up may have left a thread stuck in a request (config/preload.py): the
    # interpreter's exit would wait for it, and a stop end in SIGKILL. Its workers are gone.
    if preload_app and runtime_config.PRELOAD_FREEZE:
        from config.preload import preload_left_behind

        if preload_left_behind():
            log.warning("exiting with a warm-up request thread still stuck")
            logging.shutdown()
            os._exit(0)


def when_ready(server: Any) -> None:
    if worker_class == "runtime.workers.UvicornWorker":
        # The values in effect, for whoever changed them (runtime/asgi.py uses them).
        log.info(
            "request threads: %d per worker; a request that may write (not GET, HEAD or OPTIONS) "
            "waits up to %gs for one, then is answered 503 (GUNICORN_REQUEST_THREADS, "
            "GUNICORN_THREAD_WAIT_SECONDS)",
            runtime_config.REQUEST_THREADS,
            runtime_config.THREAD_WAIT_SECONDS,
        )
    # The master has loaded Django and is about to fork the workers (config/preload.py).
    if preload_app and runtime_config.PRELOAD_FREEZE:
        from config.preload import preload_finish

        preload_finish(server.worker_class, runtime_config.PRELOAD_WARM_PATHS)


def post_fork(server: Any, worker: Any) -> None:
    # With preload_app the master may hold sockets opened while loading Django; a child must
    # never share them, or two processes talk over one Postgres connection. Without preload,
    # Django is not loaded yet: there is nothing to close.
    if preload_app:
        from django.db import connections

        connections.close_all()

    from runtime import memory_guard

    # Our Uvicorn workers: max_requests (Gunicorn's count plus this worker's jitter, already in
    # the worker's Uvicorn config) goes to the memory guard, which drains the worker before it
    # stops; Uvicorn's own limit would close connections it has just accepted (a reset). The
    # stock worker (SERVER_RUNTIME=stock) cannot drain: it keeps Uvicorn's limit, as released.
    recycle_after = 0
    uvicorn_config = getattr(worker, "config", None)
    limit = getattr(uvicorn_config, "limit_max_requests", None)
    if runtime_config.POOLED and limit and limit < sys.maxsize:
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

    from core.metric_values import flush

    def abort(signum: int, frame: Any) -> None:
        worker_abort(worker)
        # os._exit skips atexit, where the last requests' metrics are written. Bounded: the
        # thread this interrupted may hold what another thread's flush waits for.
        flush(wait=0.5)
        sys.stderr.flush()
        os._exit(1)

    def flush_then_end(signum: int, frame: Any) -> None:
        # Uvicorn re-raises the SIGTERM (or SIGINT) it caught once its server has stopped, into
        # the handler it found: the default action would end the worker without atexit.
        flush(wait=0.5)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    if signal.getsignal(signal.SIGABRT) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGABRT, abort)
    for ending in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(ending) in (signal.SIG_DFL, None):
            signal.signal(ending, flush_then_end)

    # This worker's checks of the primary and each replica (core/db.py), before its first
    # request: a read never waits for them, nor goes to the primary for want of them.
    from core.db import replica_checkers_start
    from core.metric_values import flushing_start

    replica_checkers_start()
    flushing_start()


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
