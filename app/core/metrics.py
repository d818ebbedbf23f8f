"""Prometheus metrics: requests, database queries and cache calls, served at /metrics.

Under Gunicorn every worker is its own process, so prometheus_client runs in multiprocess mode:
app/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before the master imports this module, each
process writes its values to files there, and a scrape of any worker sums them all (counters and
histograms of workers that have exited included, so totals never go backwards when a worker is
recycled). What every request records is written to those files in batches, at most a second
late (core.metric_values). Without the variable (tests, manage.py) the default in-process
registry is used.

What is recorded, and where:
  - requests: RequestDiagnosticsMiddleware (core.middleware), by method, view and status;
  - queries: an execute_wrapper installed on every database connection as it is created;
  - cache: core.cache.InstrumentedRedisCache, the cache backend, by operation, and a domain's
    own Redis calls to the cache instance, timed and counted alike (observe_cache, count_cache_get);
  - replicas: whether each serves reads and its lag, from core.db's checks;
  - worker aborts: Gunicorn's worker_abort hook (app/gunicorn.conf.py), on WORKER TIMEOUT;
  - each worker's resident memory and its limit: runtime.metrics.
prometheus_client's own process metrics (CPU, fds) are not available in multiprocess mode; take
them from cAdvisor or the kubelet. Alerts on all of these: monitoring/rules/alerts.yml.
"""

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from core import metric_values

# In multiprocess mode every value written first checks whether its process has forked since, by
# its process ID, and os.getpid() is a system call each time: several per request. The ID is
# kept here instead, renewed in a forked child before it runs anything else (os.register_at_fork),
# so it stays distinct between processes running at once, as prometheus_client requires of it.
# Every value of a process must come from this one factory (a second one under the same ID would
# write the same file at offsets of its own; metrics_discarded's has an ID of its own): the
# project's metrics are all defined here, or in modules that import this one first
# (runtime.metrics), and all are labelled, so no value exists before.
log = logging.getLogger(__name__)
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_id() -> int:
    return _pid[0]


@contextmanager
def metrics_discarded(multiproc_dir: str) -> Iterator[None]:
    """What this process records inside is counted nowhere and leaves nothing behind: a
    preloading Gunicorn master's warm-up requests (config/preload.py), which no client made.

    The values created inside come from a factory of their own, under an identifier of their
    own, writing to files of their own. On the way out their labelled children are taken out of
    every metric and this module's lookups, and the files removed (left mapped, not closed: a
    child that escaped would fail the request writing to it, not just lose its values). A
    worker forked later holding such a child would write its values to the removed files; one
    holding a child of this process's own factory would have prometheus_client set it up in the
    worker's files, at 0: a series the worker never wrote (a replica's lag of 0 before any
    check). Each step is taken on its own, and a failure logged: Gunicorn stops if its master
    raises here."""
    discarded = f"discarded-{os.getpid()}"
    factory = values.ValueClass
    discard = values.MultiProcessValue(process_identifier=lambda: discarded)  # type: ignore[no-untyped-call]
    values.ValueClass = discard
    try:
        yield
    finally:
        values.ValueClass = factory
        steps: tuple[tuple[str, Callable[[], object]], ...] = (
            ("take its values out of the metrics", lambda: _children_drop(discard)),
            ("remove its files", lambda: _files_remove(multiproc_dir, discarded)),
        )
        for what, step in steps:
            try:
                step()
            except Exception:
                log.warning("discarded metrics: could not %s", what, exc_info=True)


def _children_drop(factory: type) -> None:
    # prometheus_client lists its metrics only in the registry's private map, read here, not
    # changed; remove() would warn in multiprocess mode, so children go under the metric's lock
    # (both pinned by tests/app/core/test_metrics.py).
    for metric in list(REGISTRY._collector_to_names):
        children = getattr(metric, "_metrics", None)
        if not isinstance(children, dict) or not hasattr(metric, "_lock"):  # not labelled
            if _holds(metric, factory):
                log.error(
                    "metric %s, created unlabelled inside, keeps its discarded values", metric
                )
            continue
        with metric._lock:
            for labels, child in list(children.items()):
                if _holds(child, factory):
                    del children[labels]
    for lookup in (_request_records, _query_records, _cache_records, _cache_get_records):
        lookup.clear()


def _holds(metric: object, factory: type) -> bool:
    """Whether the metric's values come from `factory`: a counter's or gauge's value, a
    histogram's or summary's sum."""
    value = getattr(metric, "_value", None) or getattr(metric, "_sum", None)
    return isinstance(value, factory)


def _files_remove(multiproc_dir: str, identifier: str) -> None:
    for path in Path(multiproc_dir).glob(f"*_{identifier}.db"):
        path.unlink(missing_ok=True)


# Every metric has labels: a labelled metric writes no value, and so no file, until a process
# uses it, which keeps the Gunicorn master's (preloaded) import free of files to clean up; what
# its warm-up requests write is discarded (metrics_discarded).
REQUESTS = Counter(
    "django_http_requests",
    "HTTP responses, by method, view and status.",
    ["method", "view", "status"],
)
REQUEST_LATENCY = Histogram(
    "django_http_request_duration_seconds",
    "Time from the request entering Django to its response leaving it, by method and view.",
    ["method", "view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ERRORS = Counter(
    "django_http_errors",
    "Responses with a 5xx status, by method, view and status. 4xx: see django_http_requests.",
    ["method", "view", "status"],
)
QUERY_LATENCY = Histogram(
    "django_db_query_duration_seconds",
    "Database query time, by connection alias and statement kind.",
    ["alias", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0),
)
QUERY_ERRORS = Counter(
    "django_db_query_errors", "Database queries that raised, by connection alias.", ["alias"]
)
CACHE_LATENCY = Histogram(
    "django_cache_operation_duration_seconds",
    "Cache (Redis) call time, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CACHE_GETS = Counter("django_cache_gets", "Cache reads, by result (hit or miss).", ["result"])
MEMORY_RECYCLES = Counter(
    "gunicorn_worker_memory_recycles",
    "Workers the memory guard replaced, by reason (rss: past GUNICORN_MEMORY_LIMIT_MB;"
    " max_requests: past GUNICORN_MAX_REQUESTS plus jitter, Uvicorn workers).",
    ["reason"],
)

WORKER_ABORTS = Counter(
    "gunicorn_worker_aborts",
    "Workers stopped on WORKER TIMEOUT, by reason (timeout: Gunicorn killed a worker silent past"
    " GUNICORN_TIMEOUT; request_thread: a request's sync code ran past it and the worker drained,"
    " once however many of its threads were stuck).",
    ["reason"],
)
REQUESTS_REFUSED = Counter(
    "web_requests_refused",
    "Requests answered 503 server_busy before any of their sync code ran, by reason"
    " (no_request_thread: none of their worker's request threads came free within"
    " GUNICORN_THREAD_WAIT_SECONDS, runtime/asgi.py).",
    ["reason"],
)
# What every request records: written to the files in batches (core.metric_values). Set here,
# after the metrics are defined: being labelled, none has a value yet.
PER_REQUEST = frozenset(
    next(iter(metric.describe())).name
    for metric in (REQUESTS, REQUEST_LATENCY, QUERY_LATENCY, CACHE_LATENCY, CACHE_GETS)
)
if values.ValueClass is not values.MutexValue:  # multiprocess mode
    values.ValueClass = metric_values.buffered(process_identifier=_process_id, names=PER_REQUEST)
# Each process's own check of each replica (core.db): the lowest and the highest across live
# workers, so one worker that found a replica unfit shows.
REPLICA_SERVING = Gauge(
    "django_db_replica_serving",
    "1 if this worker's check found the replica (Django alias) fit to serve reads: a streaming"
    " standby of this primary within REPLICA_MAX_LAG_SECONDS; else 0, also while its check"
    " stalls (a frozen server) past the window reads are routed by.",
    ["alias"],
    multiprocess_mode="livemin",
)
PRIMARY_REACHABLE = Gauge(
    "django_db_primary_reachable",
    "1 if this worker's check reached the primary through PgBouncer within the last two"
    " REPLICA_CHECK_SECONDS; else 0: writes fail even when Postgres itself answers its exporter."
    " Labelled by its Django alias: a labelled gauge opens its multiprocess file on first use,"
    " not at import, which in a preloading master precedes the directory.",
    ["alias"],
    multiprocess_mode="livemin",
)
REPLICA_LAG = Gauge(
    "django_db_replica_lag_seconds",
    "How far the replica's replay is behind the primary, as this worker's check measured it;"
    " NaN while unknown (unreachable, its check stalled, another cluster's standby).",
    ["alias"],
    multiprocess_mode="livemax",
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OPERATIONS = {"SELECT": "select", "INSERT": "insert", "UPDATE": "update", "DELETE": "delete"}


class _Records[K, R](dict[K, R]):
    """Each label set's recording (core.metric_values), built by `build` at its first use
    rather than looked up through .labels() on every call."""

    def __init__(self, build: Callable[[K], R]) -> None:
        super().__init__()
        self.build = build

    def __missing__(self, key: K) -> R:
        record = self[key] = self.build(key)
        return record


def _request_record(
    key: tuple[str, str, int],
) -> tuple[Callable[[float], None], Callable[[], None] | None]:
    method, view, status = key
    return (
        metric_values.recorder(
            observed=REQUEST_LATENCY.labels(method, view),
            counted=[REQUESTS.labels(method, view, str(status))],
        ),
        # Rare, and so written at once (not a per-request family).
        metric_values.counter(ERRORS.labels(method, view, str(status))) if status >= 500 else None,
    )


_request_records = _Records(_request_record)
_query_records = _Records[tuple[str, str], Callable[[float], None]](
    lambda key: metric_values.recorder(observed=QUERY_LATENCY.labels(*key))
)
_cache_records = _Records[str, Callable[[float], None]](
    lambda operation: metric_values.recorder(observed=CACHE_LATENCY.labels(operation))
)
_cache_get_records = _Records[bool, Callable[[], None]](
    lambda hit: metric_values.counter(CACHE_GETS.labels("hit" if hit else "miss"))
)


def observe_request(method: str, view: str, status: int, seconds: float) -> None:
    # Folded before the lookup: a client's made-up methods must not grow it.
    method = method if method in _METHODS else "other"
    record, count_error = _request_records[method, view, status]
    record(seconds)
    if count_error is not None:
        count_error()


def count_worker_abort(reason: str = "timeout") -> None:
    """Called by Gunicorn's worker_abort hook, in the dying worker (the counter's file stays),
    and by the request watchdog (runtime/asgi.py) for a request thread stuck past the timeout."""
    WORKER_ABORTS.labels(reason).inc()


def count_request_refused(reason: str) -> None:
    REQUESTS_REFUSED.labels(reason).inc()


def observe_cache(operation: str, seconds: float) -> None:
    _cache_records[operation](seconds)


class cache_call:  # lower case, as contextlib.suppress: `with metrics.cache_call("get"):`
    """Times the Redis call in its block as `operation` in the cache latency, whether it
    returns or raises: every caller's hits and misses are its own to count."""

    __slots__ = ("operation", "start")

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> None:
        self.start = perf_counter()

    def __exit__(self, *exc: object) -> None:
        # Through the module's name: the bench's metrics switch replaces observe_cache.
        observe_cache(self.operation, perf_counter() - self.start)


def count_cache_get(*, hit: bool) -> None:
    _cache_get_records[hit]()


def _operation(sql: object) -> str:
    if isinstance(sql, str):
        head = sql.lstrip()[:6].upper()
        return _OPERATIONS.get(head, "other")
    return "other"


def _time_query(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    start = perf_counter()
    alias: str = context["connection"].alias
    try:
        return execute(sql, params, many, context)
    except Exception:
        QUERY_ERRORS.labels(alias).inc()
        raise
    finally:
        _query_records[alias, _operation(sql)](perf_counter() - start)


def _install_query_timer(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # First in the list, so it is the outermost wrapper and `with connection.execute_wrapper()`
    # blocks, which pop the last one, never remove it. Once per wrapper object: a connection that
    # reconnects (CONN_MAX_AGE=0 does, each request) keeps its wrappers.
    if _time_query not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _time_query)


connection_created.connect(_install_query_timer, dispatch_uid="core.metrics.query_timer")


def observe_primary(alias: str, *, reachable: bool) -> None:
    PRIMARY_REACHABLE.labels(alias).set(1 if reachable else 0)


def observe_replica(alias: str, *, serving: bool, lag_seconds: float | None) -> None:
    REPLICA_SERVING.labels(alias).set(1 if serving else 0)
    # Unknown (unreachable, stalled, another cluster's): NaN, never a stale or made-up figure.
    REPLICA_LAG.labels(alias).set(float("nan") if lag_seconds is None else lag_seconds)


def render(multiproc_dir: str | None = None) -> tuple[bytes, str]:
    """The exposition: every worker's values summed from their files in multiproc_dir (Gunicorn,
    runtime.middleware), else this process's."""
    registry = REGISTRY
    if multiproc_dir:
        metric_values.flush()  # this process's own, at least, as of now
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
