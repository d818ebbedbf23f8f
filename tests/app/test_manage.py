"""app/manage.py: a one-off command run where web runs keeps its metrics to itself."""

import os
from pathlib import Path

from tests.app.test_gunicorn_conf import in_app

RECORD = (
    "from core import metrics\n"
    "metrics.observe_request('GET', 'one-off', 200, 0.1)\n"
    "metrics.observe_replica('replica', serving=False, lag_seconds=None)\n"
    "print(metrics.render()[0].decode())"
)


def test_a_command_in_the_web_container_writes_nothing_to_the_workers_metrics_files(
    tmp_path: Path,
) -> None:
    """`docker compose exec web python3 manage.py shell` inherits web's PROMETHEUS_MULTIPROC_DIR.
    Its files there were summed into web's /metrics and, never marked dead by Gunicorn, kept its
    gauges (a replica not serving, a lag of NaN) until web restarted."""
    files = tmp_path / "metrics"
    files.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(files)}
    result = in_app("manage.py", "shell", "-c", RECORD, env=env)
    assert sorted(p.name for p in files.iterdir()) == []
    # Recorded all the same, in the command's own registry.
    exposition = result.stdout
    assert 'django_http_requests_total{method="GET",status="200",view="one-off"} 1.0' in exposition
    assert 'django_db_replica_serving{alias="replica"} 0.0' in exposition
