"""METRICS_ENABLED=false (make bench's observability scenario) records nothing; the default
records (tests/app/core/test_metrics.py). Each case runs in a fresh interpreter: the switch is
read once, when core.metrics is imported."""

import json
import os
import subprocess
import sys

from tests.support import ROOT

# Counts one request and one cache read, then reports the two counters' values.
SCRIPT = r"""
import json
import django
django.setup()
from core import metrics
metrics.observe_request("GET", "some-view", 200, 0.01)
metrics.count_cache_get(hit=True)
print(json.dumps({
    "requests": metrics.REQUESTS.labels("GET", "some-view", "200")._value.get(),
    "gets": metrics.CACHE_GETS.labels("hit")._value.get(),
}))
"""


def counted(**env: str) -> dict[str, float]:
    clean = {k: v for k, v in os.environ.items() if k not in ("METRICS_ENABLED",)}
    clean.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "APP_ENV": "local", **env},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_metrics_are_recorded_by_default():
    assert counted() == {"requests": 1.0, "gets": 1.0}


def test_metrics_enabled_false_records_nothing():
    assert counted(METRICS_ENABLED="false") == {"requests": 0.0, "gets": 0.0}
