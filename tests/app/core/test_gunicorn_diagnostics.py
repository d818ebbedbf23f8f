"""A real Gunicorn from app/gunicorn.conf.py, two Uvicorn workers on the ASGI app, no mocks:

- the memory guard with a 1 MB limit recycles workers while every request still succeeds;
- /metrics sums the request counters of every worker, the recycled ones included;
- Gunicorn's and Uvicorn's own log lines are JSON.
Only probes are requested, so neither Postgres nor Redis is needed.
"""

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gunicorn:
    url: str
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[Gunicorn]:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "APP_ENV": "test",
        "GUNICORN_PROFILE": "io",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_MEMORY_LIMIT_MB": "1",
        "GUNICORN_MEMORY_CHECK_EVERY": "3",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "--config", "gunicorn.conf.py"],
            cwd=ROOT / "app",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(f"http://127.0.0.1:{port}", log)
    try:
        wait_until(
            lambda: requests.get(server.url + "/healthz", timeout=2).status_code == 200,
            timeout=30,
            what="gunicorn to answer",
        )
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def healthz_count(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "django_http_requests_total" and sample.labels["view"] == "healthz":
                return float(sample.value)
    return 0.0


def entries(server: Gunicorn) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.lines() if line.startswith("{")]


def stopped_pids(server: Gunicorn) -> set[int]:
    """Workers the master reaped after a SIGTERM: "Worker (pid:123) was sent SIGTERM!"."""
    messages = [str(e["message"]) for e in entries(server)]
    return {int(m.split("pid:")[1].split(")")[0]) for m in messages if "was sent SIGTERM" in m}


def test_memory_guard_recycles_uvicorn_workers_without_failing_a_request(gunicorn):
    before = healthz_count(gunicorn.url)
    statuses = [requests.get(gunicorn.url + "/healthz", timeout=10).status_code for _ in range(24)]
    # Fresh connections, the case a plain SIGTERM to a Uvicorn worker fails (reset by peer).
    assert statuses == [200] * 24
    # A keep-alive client, like Nginx: a draining worker closes the connection after a complete
    # response (Connection: close) rather than under a request.
    with requests.Session() as session:
        kept = [session.get(gunicorn.url + "/healthz", timeout=10) for _ in range(12)]
    assert [r.status_code for r in kept] == [200] * 12
    assert "close" in [r.headers.get("Connection") for r in kept]

    guard = [e for e in entries(gunicorn) if e["logger"] == "core.memory_guard"]
    # 24 requests, a check on every third request of a worker, all over a 1 MB limit.
    assert len(guard) >= 4
    assert all(e["level"] == "warning" and e["rss_mb"] > 1 and e["limit_mb"] == 1 for e in guard)
    assert all("memory limit exceeded" in str(e["message"]) for e in guard)
    # Each worker over the limit stopped on its SIGTERM (after draining) and the master reaped it.
    tripped = {int(e["pid"]) for e in guard}
    wait_until(lambda: tripped <= stopped_pids(gunicorn), timeout=20, what="the workers to stop")
    boots = [e for e in entries(gunicorn) if str(e["message"]).startswith("Booting worker")]
    assert len(boots) >= 2 + len(tripped) - 1  # the last one's replacement may still be forking
    assert any(e["logger"] == "uvicorn.error" for e in entries(gunicorn))

    # Every request is counted once, though most of the workers that served them are gone.
    assert healthz_count(gunicorn.url) == before + 24 + 12


def test_every_line_gunicorn_writes_is_json(gunicorn):
    requests.get(gunicorn.url + "/healthz", timeout=5)
    lines = [line for line in gunicorn.lines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"timestamp", "level", "logger", "message", "pid"} <= entry.keys()
    assert any(json.loads(line)["message"].startswith("Starting gunicorn") for line in lines)
