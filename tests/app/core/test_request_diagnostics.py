"""Request ID, X-Request-Duration, slow-request log and JSON log lines, through Django's stack.

Each behaviour runs through both handlers: the test client (sync, as under Gunicorn's sync and
gthread workers) and the async client (ASGI, as under the Uvicorn workers, where a sync view
runs in a thread and the request ID must follow it there).
"""

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from asgiref.sync import async_to_sync

from core.logging import JsonFormatter
from tests.support import ROOT

pytestmark = pytest.mark.urls("tests.app.core.diagnostics_urls")


@pytest.fixture(params=["wsgi", "asgi"])
def get(request, client, async_client) -> Callable[..., object]:
    """GET through the sync handler or the ASGI one; headers as keyword arguments."""
    if request.param == "wsgi":
        return lambda path, **headers: client.get(path, headers=headers)
    return lambda path, **headers: async_to_sync(async_client.get)(path, headers=headers)


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Every log line emitted meanwhile, through the production formatter, parsed back."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_the_request_id_from_the_header_is_returned(get):
    response = get("/ok", x_request_id="from-nginx-123")
    assert response["X-Request-ID"] == "from-nginx-123"


def test_a_request_id_is_minted_when_none_came(get):
    first, second = get("/ok")["X-Request-ID"], get("/ok")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("unusable", ["x" * 201, "tab\tinside", "caf\u00e9"])
def test_an_unusable_request_id_is_replaced(client, unusable):
    response = client.get("/ok", HTTP_X_REQUEST_ID=unusable)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_probes_get_a_request_id_too(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000", HTTP_X_REQUEST_ID="probe-1")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "probe-1"


def test_the_duration_header_is_seconds(get):
    fast = float(get("/ok")["X-Request-Duration"])
    slow = float(get("/slow")["X-Request-Duration"])
    assert 0 <= fast < 0.05 <= slow < 5


def test_a_fast_request_logs_nothing(get, json_lines):
    get("/ok")
    assert logged_by(json_lines, "core.requests") == []


def logged_by(json_lines: Callable[[], list[dict[str, object]]], logger: str) -> list[dict]:
    return [line for line in json_lines() if line["logger"] == logger]


@pytest.fixture
def slow_line(get, settings, json_lines) -> Callable[..., dict[str, object]]:
    """GETs `path` with the slow-request thresholds given (ms); returns the one line logged."""

    def request(path: str, request_id: str, *, warning_ms: int, critical_ms: int) -> dict:
        settings.SLOW_REQUEST_WARNING_MS = warning_ms
        settings.SLOW_REQUEST_CRITICAL_MS = critical_ms
        get(path, x_request_id=request_id)
        (line,) = logged_by(json_lines, "core.requests")
        return line

    return request


def test_a_request_over_the_warning_threshold_is_logged_at_warning(slow_line):
    line = slow_line("/ok", "slow-1", warning_ms=0, critical_ms=60_000)
    assert line["level"] == "warning"
    assert line["request_id"] == "slow-1"
    assert (line["method"], line["path"], line["view"], line["status"]) == (
        "GET",
        "/ok",
        "diag-ok",
        200,
    )
    assert line["duration_ms"] >= 0
    assert line["threshold_ms"] == 0
    assert line["message"].startswith("slow request: GET /ok took")


def test_a_request_over_the_critical_threshold_is_logged_at_critical(slow_line):
    line = slow_line("/nowhere", "slow-2", warning_ms=0, critical_ms=0)
    assert line["level"] == "critical"
    assert (line["request_id"], line["view"], line["status"]) == ("slow-2", "unresolved", 404)


def test_a_line_logged_inside_the_view_is_json_with_the_request_id(get, json_lines):
    get("/logs", x_request_id="in-the-view")
    (line,) = logged_by(json_lines, "tests.diagnostics")
    assert line["request_id"] == "in-the-view"
    assert line["message"] == "a line from inside the view"
    assert line["answer"] == 42
    assert line["level"] == "warning"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["timestamp"])
    assert line["pid"] == os.getpid()


def test_djangos_own_4xx_line_has_the_request_id(get, json_lines):
    # Logged by Django's handler after the middleware chain has returned.
    get("/nowhere", x_request_id="not-found-1")
    (line,) = logged_by(json_lines, "django.request")
    assert (line["level"], line["request_id"]) == ("warning", "not-found-1")
    assert line["message"] == "Not Found: /nowhere"


def test_after_the_request_no_request_id_is_left_bound(client, json_lines):
    client.get("/logs", HTTP_X_REQUEST_ID="over")
    logging.getLogger("tests.diagnostics").warning("between requests")
    last = json_lines()[-1]
    assert last["message"] == "between requests"
    assert "request_id" not in last


def test_a_crash_is_a_500_with_the_request_id_and_a_json_traceback(client, json_lines):
    client.raise_request_exception = False
    response = client.get("/fails", HTTP_X_REQUEST_ID="crash-1")
    assert response.status_code == 500
    assert response["X-Request-ID"] == "crash-1"
    (line,) = logged_by(json_lines, "django.request")
    assert line["level"] == "error"
    assert line["request_id"] == "crash-1"
    assert "RuntimeError: boom" in line["exception"]


def test_settings_send_json_lines_to_stdout():
    """LOGGING as Django applies it: stdout, one JSON object per line, nothing on stderr."""
    script = (
        "import logging, django; django.setup();"
        "logging.getLogger('probe').warning('hello %s', 'world', extra={'n': 1})"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == ""
    line = json.loads(result.stdout)
    assert line["message"] == "hello world"
    assert (line["level"], line["logger"], line["n"]) == ("warning", "probe", 1)
    assert list(line)[:4] == ["timestamp", "level", "logger", "message"]
