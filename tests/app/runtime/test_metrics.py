"""/metrics: each web worker's memory and the memory guard's limit (runtime.metrics), next to
core's metrics (tests/app/core/test_metrics.py)."""

import os

import pytest

import runtime.metrics
from tests.app.core.test_metrics import scrape, value

pytestmark = pytest.mark.urls("tests.app.core.diagnostics_urls")


def test_worker_memory_and_its_limit_are_exported_after_a_request(client):
    runtime.metrics._rss_next = 0.0  # the next request re-reads RSS
    client.get("/ok")
    rss = value(client, "gunicorn_worker_rss_bytes", kind="web")
    with open("/proc/self/statm", "rb") as statm:
        resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    # The same process, read a moment apart: the same order of magnitude.
    assert resident / 2 < rss < resident * 2
    limit = value(client, "gunicorn_worker_memory_limit_bytes", kind="web")
    assert limit == runtime.metrics._MEMORY_LIMIT_BYTES > 0
    # The abort counter is there, at its value so far, before any abort.
    assert "gunicorn_worker_aborts_total" in scrape(client)
