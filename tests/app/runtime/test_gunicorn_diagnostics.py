"""A real Gunicorn from app/gunicorn.conf.py, two Uvicorn workers on the ASGI app, no mocks:

- the memory guard with a 1 MB limit recycles workers while every request still succeeds;
- /metrics sums the request counters of every worker, the recycled ones included, and those
  of a worker stopped by SIGTERM;
- Gunicorn's and Uvicorn's own log lines are JSON.
Only probes are requested, so neither Postgres nor Redis is needed.
"""

import json
import os
import signal
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.app.runtime.gunicorn_process import Gunicorn
from tests.app.runtime.gunicorn_process import gunicorn as start_gunicorn
from tests.support import settled, wait_until


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[Gunicorn]:
    with start_gunicorn(
        tmp_path,
        GUNICORN_WORKERS="2",
        GUNICORN_MEMORY_LIMIT_MB="1",
        GUNICORN_MEMORY_CHECK_EVERY="3",
    ) as server:
        yield server


def healthz_count(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "django_http_requests_total" and sample.labels["view"] == "healthz":
                return float(sample.value)
    return 0.0


def stopped_pids(server: Gunicorn) -> set[int]:
    """Workers that drained and exited: "Worker exiting (pid: 123)"."""
    exits = [m for m in server.messages() if m.startswith("Worker exiting")]
    return {int(m.split("pid: ")[1].split(")")[0]) for m in exits}


def test_memory_guard_recycles_uvicorn_workers_without_failing_a_request(gunicorn):
    before = settled(lambda: healthz_count(gunicorn.url))  # the start's probes
    statuses = [requests.get(gunicorn.url + "/healthz", timeout=10).status_code for _ in range(24)]
    # Fresh connections, the case a plain SIGTERM to a Uvicorn worker fails (reset by peer).
    assert statuses == [200] * 24
    # A keep-alive client, like Nginx: a draining worker closes the connection after a complete
    # response (Connection: close) rather than under a request.
    with requests.Session() as session:
        kept = [session.get(gunicorn.url + "/healthz", timeout=10) for _ in range(12)]
    assert [r.status_code for r in kept] == [200] * 12
    assert "close" in [r.headers.get("Connection") for r in kept]

    guard = [e for e in gunicorn.entries() if e["logger"] == "runtime.memory_guard"]
    # 24 requests, a check on every third request of a worker, all over a 1 MB limit.
    assert len(guard) >= 4
    assert all(e["level"] == "warning" and e["rss_mb"] > 1 and e["limit_mb"] == 1 for e in guard)
    assert all("memory limit exceeded" in str(e["message"]) for e in guard)
    # Each worker over the limit drained, stopped, and the master replaced it.
    tripped = {int(e["pid"]) for e in guard}
    wait_until(lambda: tripped <= stopped_pids(gunicorn), timeout=20, what="the workers to stop")

    # The first two workers, then one replacement per stopped worker (several may still be
    # forking when the last one stops: waited for, not assumed).
    wait_until(
        lambda: len(gunicorn.booted_workers()) >= 2 + len(tripped),
        timeout=20,
        what="a replacement for each",
    )
    assert any(e["logger"] == "uvicorn.error" for e in gunicorn.entries())

    # Every request is counted once, though most of the workers that served them are gone
    # (each wrote its own as it exited); a live worker's within core.metric_values' interval.
    wait_until(
        lambda: healthz_count(gunicorn.url) == before + 24 + 12,
        timeout=5,
        what="every request counted",
    )
    assert healthz_count(gunicorn.url) == before + 24 + 12


@pytest.mark.parametrize("runtime", ["pooled", "stock"])
def test_a_worker_stopped_by_sigterm_writes_its_last_requests_metrics_first(tmp_path, runtime):
    """Uvicorn ends a worker by re-raising the SIGTERM it caught once its server has stopped;
    the default action would skip atexit, and with it the last second's metrics, still in
    memory (core.metric_values): gunicorn.conf.py's handler writes them first."""
    with start_gunicorn(
        tmp_path, GUNICORN_WORKERS="1", GUNICORN_MAX_REQUESTS="0", SERVER_RUNTIME=runtime
    ) as server:
        before = settled(lambda: healthz_count(server.url))
        for _ in range(5):
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        # At once: well within the worker's next write of its metrics. Killed by the signal,
        # the worker logs no "Worker exiting": its replacement is what shows it has gone.
        (worker,) = server.booted_workers()
        os.kill(worker, signal.SIGTERM)
        wait_until(
            lambda: len(server.booted_workers()) == 2,
            timeout=20,
            what="its replacement",
        )
        assert settled(lambda: healthz_count(server.url)) == before + 5


def test_every_line_gunicorn_writes_is_json(gunicorn):
    requests.get(gunicorn.url + "/healthz", timeout=5)
    lines = [line for line in gunicorn.lines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"timestamp", "level", "logger", "message", "pid"} <= entry.keys()
    assert any(json.loads(line)["message"].startswith("Starting gunicorn") for line in lines)
