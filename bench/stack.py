"""What every scenario of `make bench` runs through: the bench's compose project
(djstack-bench, 127.0.0.1:28080, images tagged :bench),
hey through Nginx, and the harness' own knobs (BENCH_QUICK, BENCH_ROUNDS, BENCH_ONLY,
BENCH_CONFIGS, BENCH_RESULTS). Standard library only."""
# This module's job is running docker and hey with arguments it builds itself.
# ruff: noqa: S603, S607

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import hey

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
PROJECT = os.environ.get("BENCH_PROJECT", "djstack-bench")
PORT = int(os.environ.get("BENCH_PORT", "28080"))
TAG = os.environ.get("BENCH_IMAGE_TAG", "bench")
BASE = f"http://127.0.0.1:{PORT}"
COMPOSE_FILES = ["-f", "docker-compose.yml", "-f", "bench/compose.bench.yml"]
# What the scenarios need: Nginx, web and its dependencies, the upstream stand-ins, the replica.
# The Celery services are left out; scenario 7 (reports) starts worker-reports itself.
SERVICES = ["nginx", "web", "price", "recommendations", "db-replica"]
CELERY_SERVICES = ["worker", "worker-reports", "worker-email", "beat"]

# Rounds of every measurement: a burst of load from elsewhere hits one round, not every one.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "") or (1 if QUICK else 2))


def in_round_order(items: list[Any], round_: int) -> list[Any]:
    """The runs of one round: in order in odd rounds, reversed in even ones. A drift through a
    round (a machine warming, a neighbour's load building) then favours no run: over a forward
    and a reversed round each run's mean position is the same."""
    return list(items) if round_ % 2 else list(reversed(items))


# A/B alternations per comparison (scenarios 2 and 4).
ALTERNATIONS = 1 if QUICK else 2
# BENCH_ONLY=reports,pgbouncer: only these steps (the scenarios' STEP names); their results replace
# those of the same scenarios in the existing results.json, the rest of it is kept.
ONLY = {name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()}
# BENCH_CONFIGS="uvicorn x2,stock": only the web configurations whose name contains one of these,
# and scenario 1 only (the fan-out rows and their framework-free ceiling); with
# BENCH_ONLY=web_configs their rows replace those of the same configurations in results.json.
CONFIGS = [name.strip() for name in os.environ.get("BENCH_CONFIGS", "").split(",") if name.strip()]
# Where results go (and what BENCH_ONLY merges into): a one-off comparison can leave the
# published results.json alone.
RESULTS = Path(os.environ.get("BENCH_RESULTS", "") or OUT / "results.json")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def compose_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        # Nginx's per-address rate limits lifted: every load comes from one address here.
        "NGINX_RATE_LOGIN": "100000r/s",
        "NGINX_RATE_REPORTS": "100000r/s",
        "NGINX_RATE_WRITES": "100000r/s",
        # The fan-out is measured calling both upstreams on every request: an upstream slowed
        # past its timeout by the load must not open the breaker and skip the calls.
        "UPSTREAM_BREAKER_FAILURES": "1000000",
        **os.environ,
        "COMPOSE_PROJECT_NAME": PROJECT,
        "NGINX_PORT": str(PORT),
        "IMAGE_TAG": TAG,
    }
    return {**env, **(extra or {})}


def compose(
    *args: str, extra: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, *COMPOSE_FILES, *args],
        cwd=ROOT,
        env=compose_env(extra),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def in_web(script: str, *args: str, timeout: float = 300) -> Any:
    """Runs a Python script inside the web container (the backend network); its last stdout
    line is JSON."""
    out = compose("exec", "-T", "web", "python3", "-c", script, *args, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def in_web_service(service: str, script: str, *args: str, timeout: float = 300) -> Any:
    """in_web, in another container of the Django image."""
    out = compose("exec", "-T", service, "python3", "-c", script, *args, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def wait_http(path: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(BASE + path, timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} not answering 200 through Nginx")
        time.sleep(0.5)


# --- load ----------------------------------------------------------------------------------


def load(
    path: str,
    *,
    c: int,
    n: int | None = None,
    seconds: int | None = None,
    timeout_s: int = 30,
    **labels: Any,
) -> dict[str, Any]:
    """One hey run through Nginx. Bounded: -n requests, or -z seconds (plus a hard kill)."""
    args = ["hey", "-c", str(c), "-t", str(timeout_s)]
    args += ["-z", f"{seconds}s"] if seconds else ["-n", str(n)]
    args.append(BASE + path)
    limit = (seconds or 0) + 3 * timeout_s + 60
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=limit, check=False)
    wall = time.monotonic() - started
    result = hey.parse(proc.stdout)
    result.update(
        path=path, c=c, n=n, seconds=seconds, wall_s=round(wall, 2), exit_code=proc.returncode
    )
    result.update(labels)
    summary = {k: result[k] for k in ("ok_rps", "ok", "failed")}
    log(f"  {labels.get('label', path)} c={c} {('n=' + str(n)) if n else f'{seconds}s'}: {summary}")
    return result


def warm(path: str, *, n: int = 200, c: int = 20) -> None:
    """Every worker imports its code, opens its pools and connections before measuring."""
    subprocess.run(
        ["hey", "-n", str(n), "-c", str(c), "-t", "30", BASE + path],
        capture_output=True,
        timeout=120,
        check=False,
    )


def host_info() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    hey_path = shutil.which("hey") or ""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "docker": docker,
        "load_generator": f"hey ({hey_path}), through Nginx at {BASE}",
    }


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
