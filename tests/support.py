"""Helpers the suites share: the images under test, docker and compose commands, polling."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = os.environ.get("IMAGE_REGISTRY", "djstack")
TAG = os.environ.get("IMAGE_TAG", "dev")


def image(name: str) -> str:
    return f"{REGISTRY}/{name}:{TAG}"


def run(
    *args: str, check: bool = True, timeout: float = 300, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return run("docker", *args, check=check, timeout=timeout)


def container_health(container_id: str) -> str:
    out = docker("inspect", "--format", "{{json .State}}", container_id).stdout
    state = json.loads(out)
    if not state.get("Running"):
        return "exited"
    return str(state.get("Health", {}).get("Status", "none"))


def wait_until[T](
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.5, what: str
) -> T:
    """Polls until probe() returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last!r}")


# Web workers write their requests' metrics to the shared files at least this often
# (core.metric_values.FLUSH_SECONDS is 1 s), so a count read twice this far apart has settled.
METRICS_SETTLE_SECONDS = 1.5


def settled[T](read: Callable[[], T], *, timeout: float = 15) -> T:
    """A metric's value once no worker holds a part of it unwritten: the same when read again
    METRICS_SETTLE_SECONDS later, with nothing sent meanwhile."""
    deadline = time.monotonic() + timeout
    value = read()
    while time.monotonic() < deadline:
        time.sleep(METRICS_SETTLE_SECONDS)
        again = read()
        if again == value:
            return value
        value = again
    raise AssertionError(f"the value kept changing for {timeout}s: last {value!r}")


# The services of compose's "monitoring" profile (docker-compose.yml), in start order.
MONITORING_SERVICES = [
    "prometheus",
    "alertmanager",
    "flower",
    "postgres-exporter-primary",
    "postgres-exporter-replica",
    "pgbouncer-exporter",
    "redis-exporter",
    "redis-cache-exporter",
    "nginx-exporter",
    "nginx-log-exporter",
    "node-exporter",
]


# A Django process of this checkout with the fault endpoints (tests/stack/faultapp/): only its
# settings module routes /faults/; the product's never does.
FAULT_APP_ENV = {
    "PYTHONPATH": str(ROOT / "tests/stack/faultapp"),
    "DJANGO_SETTINGS_MODULE": "fault_settings",
}


def django_process(
    script: str, *args: str, env: dict[str, str], drop: Callable[[str], bool] = lambda _: False
) -> subprocess.CompletedProcess[str]:
    """Runs `script` in a fresh interpreter with Django's settings (cwd app/, APP_ENV local),
    the environment minus the variables `drop` names plus `env`: what a process imports is a
    fact of that process."""
    base = {k: v for k, v in os.environ.items() if not drop(k)}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", "APP_ENV": "local", **env},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def django_script(
    script: str, *args: str, env: dict[str, str], drop: Callable[[str], bool] = lambda _: False
) -> list[str]:
    """django_process; returns its stdout lines, and fails with its stderr on a non-zero exit."""
    result = django_process(script, *args, env=env, drop=drop)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()
