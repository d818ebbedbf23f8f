"""The compose stack, started once per session under its own project name and port, so it never
touches a developer's running `docker compose up`; torn down with its volumes at the end, also
after a failure."""

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, run, wait_until

PROJECT = os.environ.get("STACK_PROJECT", "djstack-test")
PORT = int(os.environ.get("STACK_PORT", "18080"))
# Background work on a test clock: sweeps every few seconds instead of every 30-60, retries
# after 1s, 2s, 4s..., a report silent 8s counts as dead, reports read small chunks with a
# pause, so a worker can be killed in the middle of one, and Postgres ends a session idle in a
# transaction after 30s instead of 60s (production: .env.example). A variable
# already set in the environment wins.
FAST_BACKGROUND = {
    "OUTBOX_SWEEP_SECONDS": "2",
    "OUTBOX_RETRY_BACKOFF_SECONDS": "1",
    "OUTBOX_RETRY_BACKOFF_MAX_SECONDS": "8",
    "REPORT_SWEEP_SECONDS": "2",
    "REPORT_STALE_SECONDS": "8",
    "REPORT_CHUNK_SIZE": "500",
    "REPORT_CHUNK_PAUSE_SECONDS": "0.05",
    # Above the longest a test holds a transaction open on purpose (a row lock through the app's
    # 10 s lock wait, tests/stack/test_postgres.py).
    "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30s",
}

# Limits lifted for the suite. Nginx's per-address rates: every test request comes from one
# address (the Docker bridge's), and load and fuzz tests send far more than a person would;
# test_rate_limits puts the production defaults back for its own module.
LIFTED_LIMITS = {
    "NGINX_RATE_LOGIN": "100000r/s",
    "NGINX_RATE_REPORTS": "100000r/s",
    "NGINX_RATE_WRITES": "100000r/s",
    # The upstream stand-ins' failure modes run one test after another: an open circuit breaker
    # (proven in tests/app/shop/test_fanout.py) would skip the calls the next test checks.
    "UPSTREAM_BREAKER_FAILURES": "1000000",
}

# What the suite reads from logs that production leaves out: how each client left PgBouncer
# (tests/stack/test_gunicorn.py).
LOGGED = {"PGBOUNCER_LOG_DISCONNECTIONS": "true"}


# Run inside the web container: /metrics as Prometheus reads it.
SCRAPE = (
    "import urllib.request;"
    "print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
)
# Run inside the web container: /readyz from the container itself, as a probe reads it (Nginx
# answers it 404). Prints the status and the JSON body, 503 included.
READYZ = """
import json, sys, urllib.error, urllib.request
try:
    response = urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=float(sys.argv[1]))
except urllib.error.HTTPError as error:
    response = error
print(json.dumps({"status": response.status, "body": json.loads(response.read())}))
"""


@dataclass(frozen=True)
class Probe:
    """/readyz's answer, read like a requests.Response."""

    status_code: int
    body: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return self.body


@dataclass(frozen=True)
class Stack:
    project: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def env(self) -> dict[str, str]:
        return {
            **FAST_BACKGROUND,
            **LIFTED_LIMITS,
            **LOGGED,
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "NGINX_PORT": str(self.port),
        }

    def compose(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return run(
            "docker", "compose", *args, check=check, timeout=timeout, cwd=ROOT, env=self.env()
        )

    def up(self) -> None:
        result = self.compose("up", "--detach", "--wait", "--wait-timeout", "240", check=False)
        if result.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "40", check=False).stdout
            raise AssertionError(f"compose up failed:\n{result.stderr}\n--- logs ---\n{logs}")

    def psql(self, service: str, sql: str, database: str = "app") -> str:
        """Runs SQL as the local superuser inside a Postgres container; returns unaligned rows."""
        return self.compose(
            "exec", "-T", service, "psql", "-U", "postgres", "-d", database, "-XAtq", "-c", sql
        ).stdout.strip()

    def psql_session(self, service: str = "db-primary") -> "subprocess.Popen[str]":
        """An open psql session as the local superuser, fed SQL on its stdin, ended by closing
        it: a lock another session holds across a test's requests."""
        return subprocess.Popen(
            ["docker", "compose", "exec", "-T", service,
             "psql", "-U", "postgres", "-d", "app", "-XAtq"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=ROOT, env=self.env(), text=True,
        )  # fmt: skip

    def get(self, path: str, **kwargs: object) -> requests.Response:
        timeout = kwargs.pop("timeout", 10)
        return requests.get(self.url(path), timeout=timeout, **kwargs)  # type: ignore[arg-type]

    def post_json(self, path: str, body: object, **kwargs: object) -> requests.Response:
        timeout = kwargs.pop("timeout", 10)
        return requests.post(self.url(path), json=body, timeout=timeout, **kwargs)  # type: ignore[arg-type]

    def token(self, username: str, *, staff: bool = False) -> dict[str, str]:
        """Authorization headers for a user, created on first use (manage.py api_token)."""
        args = ["exec", "-T", "web", "python3", "manage.py", "api_token", username, "--create"]
        token = self.compose(*args, *(["--staff"] if staff else [])).stdout.strip()
        return {"Authorization": f"Bearer {token}"}

    def readyz(self, timeout: float = 10) -> Probe:
        """/readyz from inside the web container: probes reach it there, never through Nginx."""
        out = self.compose(
            "exec", "-T", "web", "python3", "-c", READYZ, str(timeout), timeout=timeout + 30
        ).stdout
        answer = json.loads(out.strip().splitlines()[-1])
        return Probe(answer["status"], answer["body"])

    def metrics(self) -> str:
        """web's /metrics from inside its container (every worker's, combined), as Prometheus
        scrapes it: Nginx does not serve it."""
        return self.compose("exec", "-T", "web", "python3", "-c", SCRAPE).stdout

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of web's /metrics by name and labels (those given, others any); None when
        it has none."""
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                wanted = all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name == name and wanted:
                    return float(sample.value)
        return None

    def wait_ready(self) -> None:
        # "ok", not only 200: a degraded stack (replica or Redis down) also answers 200.
        wait_until(
            lambda: self.readyz().json().get("status") == "ok",
            timeout=90,
            what="/readyz ok in the web container",
        )
        # And the public side: Nginx passes requests to web.
        wait_until(
            lambda: self.get("/healthz").status_code == 200,
            timeout=30,
            what="/healthz through Nginx",
        )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    s = Stack(PROJECT, PORT)
    s.compose("down", "--volumes", "--remove-orphans", check=False)
    try:
        s.up()
        s.wait_ready()
        yield s
    finally:
        s.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
