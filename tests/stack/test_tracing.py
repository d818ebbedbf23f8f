"""One trace follows a request through Nginx, Django, SQL, Redis, the upstream calls and into
the Celery task it enqueues, and its trace ID is on the log lines of web and worker.

For this module web and worker-email are recreated with OTEL_EXPORTER_OTLP_ENDPOINT pointing at
otlp-sink (docker-compose.yml, profile tracing-test: a receiver that prints every span as a JSON
line), and with SLOW_REQUEST_WARNING_MS=0 so that every request writes a log line of its own
(a fast 201 writes none). Beat is stopped meanwhile: its outbox sweep (every 2 s here) could
claim the order's email before the request's own relay task does, and send it in a trace of its
own. All are restored, and the sink removed, at the end.
"""

import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stack.test_background import customer, product
from tests.stack.test_faults import json_lines
from tests.support import ROOT, run, wait_until

SINK = "otlp-sink"
TRACED = ("web", "worker-email")
# Every trace kept: the default keeps a tenth (tests/app/core/test_tracing.py).
TRACING = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{SINK}:4318",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "SLOW_REQUEST_WARNING_MS": "0",
}


def recreate(stack, env: dict[str, str]) -> None:
    """The traced services recreated with `env` on top of the stack's; then Nginx restarted, as
    it resolves web's (new) address only when it starts."""
    run(
        "docker", "compose", "up", "--detach", "--no-deps", "--wait", "--wait-timeout", "120",
        *TRACED, cwd=ROOT, env={**stack.env(), **env}, timeout=300,
    )  # fmt: skip
    stack.compose("restart", "nginx")
    stack.wait_ready()


@pytest.fixture(scope="module")
def traced(stack) -> Iterator[None]:
    # Naming a service of a profile starts it without --profile.
    stack.compose("up", "--detach", "--no-deps", "--wait", "--wait-timeout", "60", SINK)
    stack.compose("stop", "beat")
    try:
        recreate(stack, TRACING)
        yield
    finally:
        recreate(stack, {})
        stack.compose("rm", "--stop", "--force", SINK, check=False)
        stack.compose("up", "--detach", "--no-deps", "--wait", "--wait-timeout", "90", "beat")


def all_spans(stack) -> list[dict[str, Any]]:
    """The sink's spans (its JSON lines; compose may prefix terminal escapes)."""
    out = stack.compose("logs", "--no-color", "--no-log-prefix", SINK).stdout
    lines = (re.sub(r"^(\x1b\[[0-9;]*[A-Za-z])+", "", line) for line in out.splitlines())
    return [json.loads(line) for line in lines if line.startswith("{")]


def spans_of(stack, trace_id: str) -> list[dict[str, Any]]:
    return [span for span in all_spans(stack) if span["trace_id"] == trace_id]


def new_trace() -> tuple[str, str, str]:
    """(trace ID, the client's span ID, its W3C traceparent header), sampled."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def ancestors(span: dict[str, Any], spans: list[dict[str, Any]]) -> set[str]:
    by_id = {s["span_id"]: s for s in spans}
    found: set[str] = set()
    while span["parent_span_id"] in by_id and span["parent_span_id"] not in found:
        found.add(span["parent_span_id"])
        span = by_id[span["parent_span_id"]]
    found.add(span["parent_span_id"])
    return found


def db_system(span: dict[str, Any]) -> str | None:
    attributes = span["attributes"]
    return attributes.get("db.system") or attributes.get("db.system.name")


def only(spans: list[dict[str, Any]], **match: str) -> dict[str, Any]:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_an_order_is_one_trace_from_the_client_to_its_email_task_and_its_logs(stack, traced):
    headers, _, _ = customer(stack)
    product_id = product(stack)
    trace_id, client_span, traceparent = new_trace()
    request_id = uuid.uuid4().hex
    response = stack.post_json(
        "/api/orders",
        {"items": [{"product_id": product_id, "quantity": 1}]},
        headers={**headers, "traceparent": traceparent, "X-Request-ID": request_id},
    )
    assert response.status_code == 201, response.text
    relay = "run/notifications.send_email"

    def the_whole_trace() -> list[dict[str, Any]] | None:
        spans = spans_of(stack, trace_id)
        done = any(s["name"] == relay for s in spans) and any(s["kind"] == "SERVER" for s in spans)
        return spans if done else None

    # Spans leave in batches every 5 s (the SDK's default), the relay runs after the commit.
    spans = wait_until(the_whole_trace, timeout=60, what=f"the spans of trace {trace_id}")
    web = [s for s in spans if s["service"] == "djstack-web"]
    worker = [s for s in spans if s["service"] == "djstack-worker"]

    # The view: the server span continues the client's traceparent, which Nginx passed on.
    view = only(web, kind="SERVER")
    assert view["name"] == "POST api/orders"
    assert view["attributes"]["http.route"] == "api/orders"
    assert view["parent_span_id"] == client_span
    # Its SQL and its Redis calls (stock cache, product list version, read-your-writes mark,
    # the broker publish), children of the view.
    sql = [s for s in web if db_system(s) == "postgresql"]
    redis = [s for s in web if db_system(s) == "redis"]
    assert sql, web
    assert redis, web
    for span in sql + redis:
        assert view["span_id"] in ancestors(span, spans), span
    # The enqueue, and the email relay task in the worker, joined through the message headers.
    enqueue = only(web, name="apply_async/notifications.send_email", kind="PRODUCER")
    task = only(worker, name=relay, kind="CONSUMER")
    assert task["parent_span_id"] == enqueue["span_id"]
    assert view["span_id"] in ancestors(task, spans)
    assert [s for s in worker if db_system(s) == "postgresql"], worker  # the claim and the mark

    # The same trace ID, next to the request ID, on the log lines of Nginx, web and the worker.
    access = [e for e in json_lines(stack, "nginx") if e.get("request_id") == request_id]
    assert [e["traceparent"] for e in access] == [traceparent], access
    web_lines = [e for e in json_lines(stack, "web") if e.get("request_id") == request_id]
    assert web_lines, "no web log line of the request"
    assert {e.get("trace_id") for e in web_lines} == {trace_id}, web_lines
    worker_lines = wait_until(
        lambda: [
            e
            for e in json_lines(stack, "worker-email")
            if e.get("request_id") == request_id and "sent" in str(e.get("message"))
        ],
        timeout=30,
        what="the relay's log line",
    )
    assert {e.get("trace_id") for e in worker_lines} == {trace_id}, worker_lines


def test_the_product_page_fan_out_is_in_the_trace_of_its_request(stack, traced):
    product_id = product(stack)
    trace_id, client_span, traceparent = new_trace()
    response = stack.get(f"/api/products/{product_id}", headers={"traceparent": traceparent})
    assert response.status_code == 200, response.text

    def upstream_calls() -> list[dict[str, Any]] | None:
        spans = spans_of(stack, trace_id)
        clients = [s for s in spans if s["kind"] == "CLIENT" and "aiohttp" in s["scope"]]
        return spans if len(clients) == 2 and any(s["kind"] == "SERVER" for s in spans) else None

    spans = wait_until(upstream_calls, timeout=30, what=f"the upstream spans of {trace_id}")
    view = only(spans, kind="SERVER")
    assert view["name"] == "GET api/products/<product_id>"
    assert view["parent_span_id"] == client_span
    clients = [s for s in spans if s["kind"] == "CLIENT" and "aiohttp" in s["scope"]]
    urls = sorted(
        str(s["attributes"].get("url.full") or s["attributes"]["http.url"]) for s in clients
    )
    assert "/price/" in urls[0], urls
    assert "/recommendations/" in urls[1], urls
    for span in clients:
        assert view["span_id"] in ancestors(span, spans)


# The default sampler, every new trace wanted (a ratio of 1), capped at one recorded trace a
# second in each of two workers.
CAPPED = {
    **TRACING,
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "1",
    "TRACES_MAX_PER_SECOND": "1",
    "GUNICORN_WORKERS": "2",
}
# Past OpenTelemetry's export delay (OTEL_BSP_SCHEDULE_DELAY, 5 s): each worker has exported
# every span it held that long.
EXPORTED_SECONDS = 6


def test_a_client_asking_for_every_trace_gets_no_more_recorded_than_the_cap(stack, traced):
    """README, Tracing: each worker records at most TRACES_MAX_PER_SECOND of the traces its
    clients ask for a second (a budget apart from its new traces'). Of 40 requests in a burst,
    each with a sampled traceparent, each worker records one, and one more a second; every one
    is answered. A second later the next is recorded again: a rate, not a quota."""
    recreate(stack, CAPPED)
    try:
        asked = []
        started = time.monotonic()
        for _ in range(40):
            trace_id, _, traceparent = new_trace()
            response = stack.get("/api/products", headers={"traceparent": traceparent})
            assert response.status_code == 200, response.text
            asked.append(trace_id)
        elapsed = time.monotonic() - started
        time.sleep(1.5)  # a token again in each worker
        trace_id, _, traceparent = new_trace()
        response = stack.get("/api/products", headers={"traceparent": traceparent})
        assert response.status_code == 200, response.text
        spans = wait_until(
            lambda: spans_of(stack, trace_id), timeout=30, what=f"the spans of {trace_id}"
        )
        assert only(spans, kind="SERVER")["name"] == "GET api/products"
        time.sleep(EXPORTED_SECONDS)
        recorded = {span["trace_id"] for span in all_spans(stack)} & set(asked)
        assert 1 <= len(recorded) <= 2 * (1 + math.ceil(elapsed)), (len(recorded), elapsed)
    finally:
        recreate(stack, TRACING)
