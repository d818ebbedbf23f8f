"""/metrics: Prometheus text with the counters and histograms the middleware, the database
wrapper and the cache backend keep. Counters live for the whole test process, so every test
compares a value before and after."""

import json
import os
import subprocess
import sys

import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

import core.metrics  # connects the query timer before any database connection exists
from core import write_deadline
from tests.support import ROOT

pytestmark = pytest.mark.urls("tests.app.core.diagnostics_urls")


def scrape(client) -> str:
    # Any Host: Prometheus scrapes the pod or container address, like a probe.
    response = client.get("/metrics", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def value(client, sample_name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(scrape(client)):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0


def test_requests_are_counted_by_method_view_and_status(client):
    labels = {"method": "GET", "view": "diag-ok", "status": "200"}
    before = value(client, "django_http_requests_total", **labels)
    for _ in range(3):
        client.get("/ok")
    assert value(client, "django_http_requests_total", **labels) == before + 3


def test_latency_is_a_histogram_by_view(client):
    labels = {"method": "GET", "view": "diag-slow"}
    count = value(client, "django_http_request_duration_seconds_count", **labels)
    total = value(client, "django_http_request_duration_seconds_sum", **labels)
    fast_bucket = value(client, "django_http_request_duration_seconds_bucket", le="0.01", **labels)
    client.get("/slow")  # sleeps 50 ms
    assert value(client, "django_http_request_duration_seconds_count", **labels) == count + 1
    assert value(client, "django_http_request_duration_seconds_sum", **labels) >= total + 0.05
    after = value(client, "django_http_request_duration_seconds_bucket", le="0.01", **labels)
    assert after == fast_bucket


def test_server_errors_are_counted_by_view_and_status(client):
    client.raise_request_exception = False
    labels = {"method": "GET", "view": "diag-fails", "status": "500"}
    before = value(client, "django_http_errors_total", **labels)
    assert client.get("/fails").status_code == 500
    assert value(client, "django_http_errors_total", **labels) == before + 1


def test_unknown_paths_share_one_label_rather_than_one_series_each(client):
    labels = {"method": "GET", "view": "unresolved", "status": "404"}
    before = value(client, "django_http_requests_total", **labels)
    client.get("/no/such/page/1")
    client.get("/no/such/page/2")
    assert value(client, "django_http_requests_total", **labels) == before + 2


def test_made_up_methods_share_one_series_and_one_record(client):
    labels = {"method": "other", "view": "diag-ok"}
    before = value(client, "django_http_requests_total", status="200", **labels)
    client.generic("BREW", "/ok")  # a record per label set: a client's verbs must not grow it
    records = len(core.metrics._request_records)
    for verb in ("PROPFIND", "X-1", "X-2"):
        client.generic(verb, "/ok")
    assert len(core.metrics._request_records) == records
    assert value(client, "django_http_requests_total", status="200", **labels) == before + 4
    assert value(client, "django_http_requests_total", method="BREW", view="diag-ok") == 0


def test_probes_are_counted_under_their_own_names(client):
    labels = {"method": "GET", "view": "healthz", "status": "200"}
    before = value(client, "django_http_requests_total", **labels)
    client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert value(client, "django_http_requests_total", **labels) == before + 1


@pytest.mark.django_db
def test_database_queries_are_timed(client):
    labels = {"alias": "default", "operation": "select"}
    before = value(client, "django_db_query_duration_seconds_count", **labels)
    assert client.get("/query").json() == {"one": 1}
    assert value(client, "django_db_query_duration_seconds_count", **labels) == before + 1


def test_cache_calls_are_timed_and_reads_counted_as_hits_or_misses(client, redis_settings):
    def sample(name: str, **labels: str) -> float:
        return value(client, name, **labels)

    sets = sample("django_cache_operation_duration_seconds_count", operation="set")
    gets = sample("django_cache_operation_duration_seconds_count", operation="get")
    hits = sample("django_cache_gets_total", result="hit")
    misses = sample("django_cache_gets_total", result="miss")
    assert client.get("/cached").json() == {"hit": "value", "miss": None}
    assert sample("django_cache_operation_duration_seconds_count", operation="set") == sets + 1
    assert sample("django_cache_operation_duration_seconds_count", operation="get") == gets + 2
    assert sample("django_cache_gets_total", result="hit") == hits + 1
    assert sample("django_cache_gets_total", result="miss") == misses + 1


def test_a_worker_abort_is_counted(client):
    before = value(client, "gunicorn_worker_aborts_total", reason="timeout")
    core.metrics.count_worker_abort()
    assert value(client, "gunicorn_worker_aborts_total", reason="timeout") == before + 1


def test_two_stuck_request_threads_in_one_worker_count_one_abort(client):
    # Each stuck thread's stack is logged, but the worker drains once: the counter behind
    # GunicornWorkerTimeout counts workers, as for Gunicorn's own WORKER TIMEOUT.
    import asyncio
    import threading

    from core import write_deadline
    from runtime.asgi import Lease, PooledExecutorASGIHandler, Watched

    before = value(client, "gunicorn_worker_aborts_total", reason="request_thread")
    handler = PooledExecutorASGIHandler()
    release = threading.Event()

    async def two_stuck() -> None:
        for _ in range(2):
            lease = Lease(handler.executors)
            lease.submit(release.wait)
            while lease.executor is None or lease.executor.busy_since is None:
                await asyncio.sleep(0.01)
            abort = asyncio.get_running_loop().create_future()
            handler._in_flight[lease] = Watched(abort, write_deadline.Deadline(at=0.0))
        await asyncio.sleep(0.05)
        handler._watch(0.01)
        handler._watch(0.01)

    try:
        asyncio.run(two_stuck())
    finally:
        release.set()
        handler.executors.close()
    assert value(client, "gunicorn_worker_aborts_total", reason="request_thread") == before + 1


FORKED = """
import json, os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
# Counted from before prometheus_client is imported: its default process identifier is this.
asked = [0]
getpid = os.getpid
def counted():
    asked[0] += 1
    return getpid()
os.getpid = counted
import django
django.setup()
from core import metric_values, metrics
metrics.observe_request("GET", "parent", 200, 0.01)  # creates the series
before = asked[0]
metrics.observe_request("GET", "parent", 200, 0.01)
asked_per_request = asked[0] - before
child = os.fork()
if child == 0:
    metrics.observe_request("GET", "child", 200, 0.01)
    metric_values.flush()  # as a worker does before os._exit (core.metric_values)
    os._exit(0)
os.waitpid(child, 0)
metrics.observe_request("GET", "parent", 200, 0.01)
print(json.dumps({"parent": getpid(), "child": child, "asked": asked_per_request}))
"""


def test_a_forked_process_writes_its_metrics_to_its_own_files(tmp_path):
    """Multiprocess mode keeps each process's ID instead of asking the system on every value
    written (core.metrics): a request's metrics ask nothing, and a worker forked after the
    master counted requests still writes to files of its own, and the master's stay its own."""
    result = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path)],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=True,
    )
    pids = json.loads(result.stdout.splitlines()[-1])
    assert pids["asked"] == 0

    def requests(pid: int) -> dict[str, float]:
        path = tmp_path / f"counter_{pid}.db"
        found = {}
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == "django_http_requests_total":
                found[labels["view"]] = value
        return found

    assert requests(pids["parent"]) == {"parent": 3.0}
    # The child lists the series it inherited at 0 (prometheus_client's reset on a fork).
    assert requests(pids["child"]) == {"parent": 0.0, "child": 1.0}


def test_the_prometheus_client_internals_metrics_discarded_reads_are_there():
    # core.metrics.metrics_discarded reads the registry's map of its metrics, a labelled
    # metric's children and lock, and a child's value, none of them public: an upgrade that
    # changes them must fail here, not in a master at start.
    from prometheus_client import REGISTRY, Counter, Histogram

    counter = Counter("internals_probe", "-", ["label"], registry=None)
    histogram = Histogram("internals_probe_seconds", "-", ["label"], registry=None)
    found = {
        "CollectorRegistry._collector_to_names": isinstance(
            getattr(REGISTRY, "_collector_to_names", None), dict
        ),
        "MetricWrapperBase._metrics": isinstance(getattr(counter, "_metrics", None), dict),
        "MetricWrapperBase._lock": hasattr(counter, "_lock"),
        "Counter child _value": hasattr(counter.labels("x"), "_value"),
        "Histogram child _sum": hasattr(histogram.labels("x"), "_sum"),
    }
    assert all(found.values()), f"prometheus_client changed: {found}; pin the version before"


def test_a_request_the_watchdog_answered_is_counted_with_the_504_its_client_got(client):
    # Its thread came back later with its own answer (a 503 after a lock timeout, or a 200),
    # which no one received: Nginx's access log has the 504.
    labels = {"method": "GET", "view": "diag-ok"}
    before = value(client, "django_http_requests_total", status="504", **labels)
    deadline, token = write_deadline.start(60)
    write_deadline.answer(deadline)
    try:
        client.get("/ok")
    finally:
        write_deadline.end(token)
    assert value(client, "django_http_requests_total", status="504", **labels) == before + 1
