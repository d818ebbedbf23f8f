"""Per-request metrics written to the multiprocess files in batches (core.metric_values), each
case in a process of its own in multiprocess mode, as under Gunicorn: the test process itself
uses prometheus_client's in-process registry."""

import json
import os
import subprocess
import sys

from prometheus_client.mmap_dict import MmapedDict

from core import metrics
from tests.support import ROOT

# Runs the lines given after it with core.metrics loaded in multiprocess mode.
PREAMBLE = """
import json, os, sys, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
import django
django.setup()
from core import metric_values, metrics

def on_file(sample, pid=None):
    from prometheus_client.mmap_dict import MmapedDict
    path = os.path.join(sys.argv[1], f"counter_{pid or os.getpid()}.db")
    if not os.path.exists(path):
        return 0.0
    for key, value, *_ in MmapedDict.read_all_values_from_file(path):
        if json.loads(key)[1] == sample:
            return value
    return 0.0
"""


def run(tmp_path, body: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PREAMBLE + body, str(tmp_path)],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return out


def on_file(tmp_path, pid: object, sample: str) -> float:
    path = tmp_path / f"counter_{pid}.db"
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        if json.loads(key)[1] == sample:
            return float(value)
    return 0.0


def test_a_requests_metrics_reach_the_files_within_the_flush_interval_not_at_once(tmp_path):
    found = run(
        tmp_path,
        """
metric_values.flushing_start()  # as each web worker does
metrics.observe_request("GET", "v", 200, 0.01)
metrics.observe_request("GET", "v", 200, 0.01)
at_once = on_file("django_http_requests_total")
counted = metrics.REQUESTS.labels("GET", "v", "200")._value.get()
deadline = time.monotonic() + 10 * metric_values.FLUSH_SECONDS
while on_file("django_http_requests_total") < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"at_once": at_once, "counted": counted,
                  "later": on_file("django_http_requests_total")}))
""",
    )
    # Nothing written by the increment itself; the process's own count has them all, and its
    # flushing thread writes them without being asked.
    assert found == {"at_once": 0.0, "counted": 2.0, "later": 2.0}


def test_a_scrape_writes_its_own_process_metrics_first(tmp_path):
    found = run(
        tmp_path,
        """
metrics.observe_request("GET", "v", 200, 0.01)
body, _ = metrics.render(sys.argv[1])
print(json.dumps({"scraped": 'django_http_requests_total{method="GET",status="200",view="v"} 1.0'
                  in body.decode()}))
""",
    )
    assert found == {"scraped": True}


def test_rare_events_and_gauges_are_written_at_once(tmp_path):
    found = run(
        tmp_path,
        """
metrics.count_worker_abort("timeout")
print(json.dumps({"aborts": on_file("gunicorn_worker_aborts_total")}))
""",
    )
    assert found == {"aborts": 1.0}


def test_a_process_that_exits_writes_what_it_counted(tmp_path):
    found = run(
        tmp_path,
        """
metric_values.FLUSH_SECONDS = 3600  # only the exit can write it
metrics.observe_request("GET", "v", 200, 0.01)
print(json.dumps({"pid": os.getpid(), "before_exit": on_file("django_http_requests_total")}))
""",
    )
    assert found["before_exit"] == 0.0
    assert on_file(tmp_path, found["pid"], "django_http_requests_total") == 1.0


def test_a_forked_child_writes_only_its_own_amounts(tmp_path):
    found = run(
        tmp_path,
        """
metric_values.FLUSH_SECONDS = 3600
metrics.observe_request("GET", "v", 200, 0.01)  # pending in the parent at the fork
child = os.fork()
if child == 0:
    metrics.observe_request("GET", "v", 200, 0.01)
    metric_values.flush()
    os._exit(0)
os.waitpid(child, 0)
print(json.dumps({"parent": os.getpid(), "child": child}))
""",
    )
    assert on_file(tmp_path, found["child"], "django_http_requests_total") == 1.0
    assert on_file(tmp_path, found["parent"], "django_http_requests_total") == 1.0


def test_the_buffered_families_are_the_per_request_metrics():
    assert {
        metric._name  # type: ignore[attr-defined]
        for metric in (
            metrics.REQUESTS,
            metrics.REQUEST_LATENCY,
            metrics.QUERY_LATENCY,
            metrics.CACHE_LATENCY,
            metrics.CACHE_GETS,
        )
    } == metrics.PER_REQUEST


def test_a_recording_under_one_lock_counts_as_prometheus_clients_own_calls_do(tmp_path):
    """core.metrics records each request, query and cache call in one call of its recorder
    (metric_values.recorder): the same samples as inc() and observe() on the same children,
    on every bucket's edge and past the last one."""
    found = run(
        tmp_path,
        """
amounts = [0.0, 0.0004, 0.0005, 0.00051, 0.005, 0.3, 1.0, 29.9, 30.0, 31.0, 1e9]
for amount in amounts:
    metrics.observe_request("GET", "recorded", 503, amount)
    metrics.REQUESTS.labels("GET", "called", "503").inc()
    metrics.ERRORS.labels("GET", "called", "503").inc()
    metrics.REQUEST_LATENCY.labels("GET", "called").observe(amount)
    metrics.observe_cache("recorded", amount)
    metrics.CACHE_LATENCY.labels("called").observe(amount)
metrics.count_cache_get(hit=True)
metrics.CACHE_GETS.labels("miss").inc()
body, _ = metrics.render(sys.argv[1])
lines = [line for line in body.decode().splitlines() if not line.startswith("#")]
def samples(label, value):
    return sorted(line.replace(label + '="' + value + '"', label + '="x"') for line in lines
                  if label + '="' + value + '"' in line)
print(json.dumps({
    "requests": [samples("view", "recorded"), samples("view", "called")],
    "cache": [samples("operation", "recorded"), samples("operation", "called")],
    "gets": [samples("result", "hit"), samples("result", "miss")],
    "paths": sorted({record.__name__ for record in [
        *(record for record, _ in metrics._request_records.values()),
        *metrics._cache_records.values(), *metrics._cache_get_records.values()]}),
}))
""",
    )
    for recorded, called in (found["requests"], found["cache"], found["gets"]):
        assert recorded == called
        assert recorded
    assert found["paths"] == ["count", "record"]  # one lock each, not through the children
