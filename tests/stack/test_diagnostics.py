"""Request-level diagnostics on the running stack: request IDs from Nginx through Django into
Celery, JSON logs, /metrics summed over the Gunicorn workers and hidden from outside, and the
memory guard replacing workers under load without a failed request."""

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.support import ROOT, run, settled, wait_until

# ops/apis.py: GET /api/tasks/{task_id}, url_name "task_detail" in the "api" namespace.
TASK_DETAIL_VIEW = "api:task_detail"

# Per worker process: the same counter read from each process's own file, not summed (GETs
# only, as task_detail_refusals reads: a HEAD is counted under its own method).
PER_WORKER = f"""
import glob, json, os
from prometheus_client.multiprocess import MultiProcessCollector
counts = {{}}
for path in glob.glob(os.path.join(os.environ['GUNICORN_METRICS_DIR'], 'counter_*.db')):
    pid = path.rsplit('_', 1)[1][:-3]
    for metric in MultiProcessCollector.merge([path]):
        for s in metric.samples:
            labels = (s.labels.get('method'), s.labels.get('view'), s.labels.get('status'))
            if (s.name, *labels) == (
                'django_http_requests_total', 'GET', '{TASK_DETAIL_VIEW}', '401'
            ):
                counts[pid] = counts.get(pid, 0) + s.value
print(json.dumps(counts))
"""


def json_lines(stack, service: str) -> list[dict[str, Any]]:
    out = stack.compose("logs", "--no-color", "--no-log-prefix", service).stdout
    # Compose may start each line with a terminal escape (erase line) even with --no-color.
    lines = (re.sub(r"^(\x1b\[[0-9;]*[A-Za-z])+", "", line) for line in out.splitlines())
    return [json.loads(line) for line in lines if line.startswith("{")]


def lines_with_request_id(stack, service: str, request_id: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(stack, service) if e.get("request_id") == request_id]


def test_request_id_and_duration_come_back_through_nginx(stack):
    mine = str(uuid.uuid4())
    response = stack.get("/api/tasks/not-a-task", headers={"X-Request-ID": mine})
    assert response.status_code == 401  # staff only
    # Exactly one header: Nginx's, equal to the ID Django used (requests would join two).
    assert response.headers["X-Request-ID"] == mine
    assert 0 <= float(response.headers["X-Request-Duration"]) < 5

    minted = stack.get("/api/tasks/not-a-task").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted)


@pytest.mark.parametrize(
    "theirs", ["caf\u00e9-1", "x" * 201, "a\x01b", "a\x7fb"], ids=["latin-1", "201", "ctl", "del"]
)
def test_a_request_id_django_would_replace_is_replaced_by_nginx_with_one_id_throughout(
    stack, theirs
):
    """Nginx keeps what Django keeps (core/request_context.py's rule): the client, Nginx's
    access log and web's log carry one ID, so grepping the answer's finds the request."""
    sent = {"X-Request-ID": theirs.encode("latin-1")}
    response = stack.get("/api/tasks/not-a-task", headers=sent)
    assert response.status_code == 401
    minted = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted), minted
    wait_until(
        lambda: lines_with_request_id(stack, "web", minted), timeout=10, what="the web log line"
    )
    assert wait_until(
        lambda: lines_with_request_id(stack, "nginx", minted), timeout=10, what="Nginx's line"
    )


def test_the_web_log_has_json_lines_with_the_request_id(stack):
    mine = str(uuid.uuid4())
    stack.get("/api/tasks/not-a-task", headers={"X-Request-ID": mine})
    # Django logs every 4xx on django.request at warning.
    lines = wait_until(
        lambda: lines_with_request_id(stack, "web", mine), timeout=10, what="the web log line"
    )
    (line,) = [e for e in lines if e["logger"] == "django.request"]
    assert line["level"] == "warning"
    assert "/api/tasks/not-a-task" in line["message"]
    assert {"timestamp", "pid"} <= line.keys()


def test_a_task_logs_the_request_id_of_the_request_that_enqueued_it(stack):
    mine = str(uuid.uuid4())
    headers = {"X-Request-ID": mine, **stack.token("diagnostics-staff", staff=True)}
    response = stack.post_json("/api/tasks", {"a": 1, "b": 2}, headers=headers)
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == mine
    status_url = response.json()["status_url"]
    wait_until(
        lambda: stack.get(status_url, headers=headers).json()["state"] == "SUCCESS",
        timeout=30,
        what="the task",
    )
    lines = wait_until(
        lambda: lines_with_request_id(stack, "worker", mine), timeout=10, what="worker lines"
    )
    succeeded = [e for e in lines if "succeeded" in e["message"]]
    assert succeeded, lines
    assert succeeded[0]["logger"] == "celery.app.trace"
    assert succeeded[0]["task_name"] == "ops.add"
    assert succeeded[0]["task_id"] == response.json()["id"]


def test_gunicorn_and_celery_log_json(stack):
    web = json_lines(stack, "web")
    boots = [e for e in web if e["logger"] == "gunicorn.error" and "Booting worker" in e["message"]]
    assert len(boots) >= 2
    assert all({"timestamp", "level", "pid"} <= e.keys() for e in boots)
    worker = json_lines(stack, "worker")
    assert any(e["logger"].startswith("celery") for e in worker)
    # No access lines from Gunicorn or Uvicorn: Nginx's JSON access log has every request.
    assert not [e for e in web if e["logger"] in {"gunicorn.access", "uvicorn.access"}]


def task_detail_refusals(stack) -> float:
    """Anonymous GETs of a task, each answered 401 (staff only)."""
    found = stack.metric(
        "django_http_requests_total", method="GET", view=TASK_DETAIL_VIEW, status="401"
    )
    return found or 0.0


def per_worker(stack) -> dict[str, float]:
    out = stack.compose("exec", "-T", "web", "python3", "-c", PER_WORKER).stdout
    return {pid: float(value) for pid, value in json.loads(out).items()}


def all_written(stack, total: float) -> dict[str, float]:
    """Each worker's count once their files hold `total`: a worker writes its requests' metrics
    within a second (core.metric_values)."""

    def counts() -> dict[str, float] | None:
        found = per_worker(stack)
        return found if sum(found.values()) == total else None

    return wait_until(counts, timeout=10, what=f"{total} requests in the workers' files")


def test_metrics_are_hidden_from_outside_and_summed_over_workers_inside(stack):
    for path in ("/metrics", "/metrics?format=prometheus"):
        outside = stack.get(path)
        assert outside.status_code == 404
        assert outside.headers["Content-Type"] == "application/json"
        assert outside.json()["error"]["code"] == "not_found"

    before = settled(lambda: task_detail_refusals(stack))  # earlier tests' requests
    sent = 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        # Concurrent bursts open several upstream connections, which the kernel spreads over
        # both Uvicorn workers; repeat until each worker has served some.
        for _ in range(5):
            burst = list(pool.map(lambda _: stack.get("/api/tasks/x").status_code, range(64)))
            assert burst == [401] * 64
            sent += 64
            counts = all_written(stack, before + sent)
            if len([c for c in counts.values() if c > 0]) >= 2:
                break
    served = len([c for c in counts.values() if c > 0])
    assert served >= 2, counts
    # Whichever worker answers the scrape, it reports the sum over every worker's file.
    for _ in range(4):
        total = task_detail_refusals(stack)
        assert total == before + sent
        assert total == sum(counts.values())
    # The request threads of every worker that served, summed (GUNICORN_REQUEST_THREADS, 64
    # each), written as each worker's loop ticks; at rest none is lent and no request waits.
    threads = stack.metric("gunicorn_request_threads") or 0
    assert threads >= 64 * served, threads
    assert threads % 64 == 0, threads
    for idle in ("gunicorn_request_threads_lent", "gunicorn_request_thread_waiters"):
        wait_until(lambda: stack.metric(idle) == 0, timeout=10, what=f"{idle} at 0")  # noqa: B023
    # A product list reads the cache (filled by the preloading master's warm-up, so no query);
    # a product page, missing or not, reads the database.
    assert stack.get("/api/products").status_code == 200
    assert stack.get("/api/products/999999999").status_code == 404
    text = stack.metrics()
    for family in (
        "django_http_request_duration_seconds_bucket",
        "django_db_query_duration_seconds_count",
        "django_cache_operation_duration_seconds_count",
    ):
        assert family in text


def recreate_web(stack, **env: str) -> None:
    """Recreates web with extra environment (none: as configured), then Nginx, which resolves
    the web container's (possibly new) address only when it starts."""
    run(
        "docker",
        "compose",
        "up",
        "--detach",
        "--no-deps",
        "--wait",
        "--wait-timeout",
        "120",
        "web",
        cwd=ROOT,
        env={**stack.env(), **env},
        timeout=300,
    )
    stack.compose("restart", "nginx")
    stack.wait_ready()


SETUP = (
    "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
    "django.setup();"
)
QUERY = (
    "import os; from django.contrib.auth import get_user_model; from django.db import router;"
    "User = get_user_model(); list(User.objects.all()[:5]);"
    "print('ran', os.getpid(), router.db_for_read(User))"
)


@pytest.mark.parametrize(
    "command",
    [
        ["python3", "manage.py", "shell", "-c", QUERY],
        ["python3", "-c", SETUP + QUERY],
    ],
    ids=["manage.py", "python -c"],
)
def test_a_process_run_in_the_web_container_leaves_webs_metrics_alone(stack, command):
    """The README's `docker compose exec web python3 manage.py ...` has web's environment; its
    files in the workers' directory would be summed into web's /metrics and outlive it (only
    Gunicorn's master hands that directory on: app/runtime/config.py)."""

    def selects(alias: str) -> float:
        found = stack.metric(
            "django_db_query_duration_seconds_count", alias=alias, operation="select"
        )
        return found or 0.0

    before = {alias: settled(lambda a=alias: selects(a)) for alias in ("default", "replica")}
    out = stack.compose("exec", "-T", "web", *command)
    ((pid, alias),) = [
        line.split()[1:] for line in out.stdout.splitlines() if line.startswith("ran ")
    ]
    files = stack.compose("exec", "-T", "web", "sh", "-c", 'ls "$GUNICORN_METRICS_DIR"')
    names = files.stdout.split()
    assert names  # web's own
    assert not [name for name in names if name.endswith(f"_{pid}.db")], names
    assert settled(lambda: selects(alias)) == before[alias]  # the process's query is not web's


def test_memory_guard_replaces_workers_without_failing_a_request(stack):
    recreate_web(stack, GUNICORN_MEMORY_LIMIT_MB="1", GUNICORN_MEMORY_CHECK_EVERY="4")
    try:
        failures = []
        staff = stack.token("memory-guard-staff", staff=True)
        for i in range(80):
            try:
                if i % 8 == 7:  # POST too: Nginx never retries it, so it must not be dropped
                    body = {"a": i, "b": 1}
                    response = requests.post(
                        stack.url("/api/tasks"), json=body, headers=staff, timeout=30
                    )
                    ok = response.status_code == 202
                else:
                    response = requests.get(stack.url("/api/products"), timeout=30)
                    ok = response.status_code == 200
                if not ok:
                    failures.append((i, response.status_code, response.text[:200]))
            except requests.RequestException as exc:
                failures.append((i, 0, repr(exc)))
        assert failures == []

        web = json_lines(stack, "web")
        guard = [e for e in web if e["logger"] == "runtime.memory_guard"]
        assert len(guard) >= 5
        assert all(e["level"] == "warning" and e["rss_mb"] > 1 for e in guard)
        assert all("memory limit exceeded" in e["message"] for e in guard)
        boots = [e for e in web if "Booting worker" in e["message"]]
        assert len(boots) >= 2 + len(guard) - 2  # the last replacements may still be forking
        # Each drained (runtime/workers.py) and exited on its own; the master forked a replacement.
        stopped = [e for e in web if e["message"].startswith("Worker exiting")]
        assert len(stopped) >= len(guard) - 2
        print(f"80 requests, 0 failed; {len(guard)} guard lines, {len(boots)} boots")
    finally:
        recreate_web(stack)
