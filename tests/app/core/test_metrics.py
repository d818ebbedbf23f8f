"""/metrics: Prometheus text with the counters and histograms the middleware, the database
wrapper and the cache backend keep. Counters live for the whole test process, so every test
compares a value before and after."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

import core.metrics  # connects the query timer before any database connection exists

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

    from runtime.asgi import PooledExecutorASGIHandler, RequestExecutor

    before = value(client, "gunicorn_worker_aborts_total", reason="request_thread")
    handler = PooledExecutorASGIHandler()
    release = threading.Event()

    async def two_stuck() -> None:
        for _ in range(2):
            executor = RequestExecutor()
            executor.submit(release.wait)
            while executor.busy_since is None:
                await asyncio.sleep(0.01)
            handler._in_flight[executor] = asyncio.get_running_loop().create_future()
        await asyncio.sleep(0.05)
        handler._watch(0.01)
        handler._watch(0.01)

    try:
        asyncio.run(two_stuck())
    finally:
        release.set()
        handler.executors.close()
    assert value(client, "gunicorn_worker_aborts_total", reason="request_thread") == before + 1
