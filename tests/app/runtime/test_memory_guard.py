"""The memory guard's decision, its cadence through the middleware, and its real shutdown path.

tests/app/runtime/test_gunicorn_diagnostics.py runs it under a real Gunicorn with Uvicorn workers.
"""

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import memory_guard
from tests.support import ROOT

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def unarmed() -> Iterator[None]:
    memory_guard.disarm()
    yield
    memory_guard.disarm()


def test_rss_is_read_from_proc():
    status = Path("/proc/self/status").read_text()
    (vm_rss_kb,) = [
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
    ]
    assert abs(memory_guard.rss_bytes() - vm_rss_kb * 1024) < 0.2 * vm_rss_kb * 1024


@pytest.mark.parametrize(
    ("rss_mb", "limit_mb", "recycle"),
    [(600, 500, True), (500, 500, False), (100, 500, False), (10_000, 0, False)],
)
def test_the_decision(rss_mb, limit_mb, recycle):
    assert memory_guard.exceeds(rss_mb * MIB, limit_mb) is recycle


def test_a_tiny_limit_recycles_on_every_nth_request_once(client, caplog):
    shutdowns: list[int] = []
    memory_guard.arm(limit_mb=1, every=3, shutdown=lambda: shutdowns.append(os.getpid()))
    caplog.set_level(logging.WARNING, logger="runtime.memory_guard")
    for _ in range(2):
        client.get("/healthz")
    assert shutdowns == []
    client.get("/healthz")
    assert shutdowns == [os.getpid()]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "memory limit exceeded" in record.getMessage()
    assert record.rss_mb > 1  # type: ignore[attr-defined]
    assert record.limit_mb == 1  # type: ignore[attr-defined]
    # The worker is on its way out: no second signal, no second line.
    for _ in range(6):
        client.get("/healthz")
    assert shutdowns == [os.getpid()]


def test_below_the_limit_nothing_happens(client):
    shutdowns: list[int] = []
    memory_guard.arm(limit_mb=1_000_000, every=1, shutdown=lambda: shutdowns.append(1))
    for _ in range(5):
        client.get("/healthz")
    assert shutdowns == []


def test_limit_zero_and_unarmed_never_check(client):
    shutdowns: list[int] = []
    memory_guard.arm(limit_mb=0, every=1, shutdown=lambda: shutdowns.append(1))
    client.get("/healthz")
    memory_guard.disarm()
    client.get("/healthz")
    assert shutdowns == []


def test_the_real_shutdown_is_sigterm_to_the_process_itself():
    """Gunicorn's graceful stop for one worker: SIGTERM, here caught to report it."""
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('SIGTERM', os.getpid()), sys.exit(0)))\n"
        "from runtime import memory_guard\n"
        "memory_guard.arm(limit_mb=1, every=1)\n"
        "memory_guard.request_finished()\n"
        "time.sleep(5)\n"
        "print('no signal')\n"
    )
    result = app_python(script)
    assert result.stdout.startswith("SIGTERM ")
    assert "memory limit exceeded" in result.stderr


def test_max_requests_recycles_once_after_the_count(client, caplog):
    """GUNICORN_MAX_REQUESTS for Uvicorn workers: counted here, so recycling drains first."""
    shutdowns: list[int] = []
    memory_guard.arm(
        limit_mb=0, every=1, max_requests=5, shutdown=lambda: shutdowns.append(os.getpid())
    )
    caplog.set_level(logging.INFO, logger="runtime.memory_guard")
    for _ in range(4):
        client.get("/healthz")
    assert shutdowns == []
    client.get("/healthz")
    assert shutdowns == [os.getpid()]
    (record,) = caplog.records
    assert "max requests reached" in record.getMessage()
    for _ in range(5):
        client.get("/healthz")
    assert shutdowns == [os.getpid()]


POST_FORK = (
    "import sys, types, importlib.util\n"
    "spec = importlib.util.spec_from_file_location('gconf', 'gunicorn.conf.py')\n"
    "conf = importlib.util.module_from_spec(spec); spec.loader.exec_module(conf)\n"
    "worker = types.SimpleNamespace(config=types.SimpleNamespace(limit_max_requests=1042))\n"
    "conf.post_fork(None, worker)\n"
    "from runtime import memory_guard\n"
    "print(worker.config.limit_max_requests, memory_guard._guard.max_requests)\n"
)


def app_python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The script in a fresh interpreter in app/, with the project's settings."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def test_post_fork_leaves_the_stock_worker_its_own_request_limit():
    # SERVER_RUNTIME=stock: uvicorn_worker.UvicornWorker cannot drain, so it recycles as released.
    assert app_python(POST_FORK, SERVER_RUNTIME="stock").stdout.split() == ["1042", "0"]


def test_post_fork_moves_uvicorns_request_limit_to_the_guard():
    assert app_python(POST_FORK).stdout.split() == ["None", "1042"]
