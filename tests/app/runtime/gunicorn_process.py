"""A real Gunicorn from app/gunicorn.conf.py on a free local port, its log in a file (JSON lines).

Only probes are requested of it in these tests, so neither Postgres nor Redis is needed.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support import ROOT, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gunicorn:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines() if line.startswith("{")]

    def messages(self) -> list[str]:
        return [str(e["message"]) for e in self.entries()]

    def booted_workers(self) -> list[int]:
        """The PID of each worker the master has started so far ("Booting worker with pid: N")."""
        return [
            int(m.split("pid: ")[1].split()[0]) for m in self.messages() if "Booting worker" in m
        ]


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *args: str, ready: bool = True, **env: str) -> Iterator[Gunicorn]:
    """Gunicorn with the io profile and `env` on top (and `args` on its command line, such as
    another app module), once it answers (`ready`) or at once; SIGTERM and reaped on exit."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    full_env = {
        **os.environ,
        "APP_ENV": "test",
        "GUNICORN_PROFILE": "io",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_METRICS_DIR": str(tmp_path / "metrics"),
        **env,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "--config", "gunicorn.conf.py", *args],
            cwd=ROOT / "app",
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(f"http://127.0.0.1:{port}", port, log, process)
    try:
        if ready:
            wait_until(
                lambda: requests.get(server.url + "/healthz", timeout=2).status_code == 200,
                timeout=30,
                what="gunicorn to answer",
            )
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
