"""/metrics: each web worker's memory and the memory guard's limit (runtime.metrics), next to
core's metrics (tests/app/core/test_metrics.py)."""

import os
import subprocess
import sys

import pytest

import runtime.metrics
from tests.app.core.test_metrics import scrape, value
from tests.support import ROOT
from tests.test_configuration import render

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


RECORD = (
    "from core import metrics\n"
    "metrics.observe_request('GET', 'one-off', 200, 0.1)\n"
    "metrics.observe_replica('replica', serving=False, lag_seconds=None)\n"
    "print(metrics.render()[0].decode())"
)
SET_UP_AND_RECORD = "import django\ndjango.setup()\n" + RECORD


@pytest.mark.parametrize(
    "command",
    [["manage.py", "shell", "-c", RECORD], ["-c", SET_UP_AND_RECORD]],
    ids=["manage.py", "python -c"],
)
def test_a_process_started_beside_gunicorn_keeps_its_metrics_to_itself(tmp_path, command):
    """Started in the web container (`docker compose exec web python3 manage.py shell`), it has
    web's environment (compose's, rendered here). Its files in the workers' directory were
    summed into web's /metrics and, never marked dead by Gunicorn, kept its gauges (a replica
    not serving) until web restarted. Only Gunicorn's master hands the directory to
    prometheus_client (runtime.config)."""
    files = tmp_path / "metrics"
    files.mkdir()
    web = render({}, tmp_path, "docker-compose.yml")["web"]["environment"]
    assert isinstance(web, dict)
    mine = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env = {**mine, **{name: str(value) for name, value in web.items()}}
    for name in ("GUNICORN_METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        if name in env:
            env[name] = str(files)  # web's metrics directory, the test's own here
    result = subprocess.run(
        [sys.executable, *command],
        env=env,
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in files.iterdir()) == []
    # Recorded all the same, in the process's own registry.
    assert 'django_http_requests_total{method="GET",status="200",view="one-off"} 1.0' in (
        result.stdout
    )
    assert 'django_db_replica_serving{alias="replica"} 0.0' in result.stdout
