#!/usr/bin/env python3
"""`make bench`: brings the stack up under its own project (djstack-bench, 127.0.0.1:28080,
images tagged :bench), runs the scenarios with hey (a separate Go program) against Nginx's
published port, and writes docs/benchmarks/results.json; bench/report.py turns that into
docs/BENCHMARKS.md and the plots. BENCH_QUICK=1: fewer configurations, shorter runs.

Standard library only: it runs with any python3, no virtualenv needed. Every load run is
bounded by a request count or a duration, and the project is torn down (`down -v`) at the end,
also after a failure.
"""
# This program's job is running docker and hey with arguments it builds itself.
# ruff: noqa: S603, S607, S108

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import hey, incontainer, pgbouncer_clients
from bench.login_flood import LoginFlood

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

UPSTREAM_MS = 300
CALLS = 3
# The seed's claim: three 300 ms calls made concurrently take 300 ms, so 100 clients in a
# closed loop can get at most 100 / 0.3 = 333 answers per second.
FANOUT_LIMIT_RPS = 100 / (UPSTREAM_MS / 1000)

# Load shapes. Sync workers serve one request per worker (0.9 s each, sequential calls), so
# 1,000 requests would take minutes: they get fewer requests at the same concurrency. hey splits
# -n evenly over its -c clients, so every -n is a multiple of its -c.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "") or (1 if QUICK else 2))
N_ASYNC = 1000
# Scenario 2's runs: the httpx clients manage ~90 req/s, so quick mode sends fewer.
N_CLIENT = 300 if QUICK else N_ASYNC
N_SYNC = 100 if QUICK else 200
C1000_SECONDS = 5 if QUICK else 10
DETAIL_SECONDS = 5 if QUICK else 20
CEILING_SECONDS = 4 if QUICK else 10
# Warm-up requests at the measured concurrency before each fan-out row.
N_WARM = 300 if QUICK else 500
# A/B alternations per comparison (scenarios 2 and 4).
ALTERNATIONS = 1 if QUICK else 2
PRELOAD_WORKERS = [2] if QUICK else [2, 4, 8]
PG_CLIENTS = 1000
# BENCH_ONLY=reports,pgbouncer: only these steps (names as in main()); their results replace
# those of the same scenarios in the existing results.json, the rest of it is kept.
ONLY = {name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",") if name.strip()}
# BENCH_CONFIGS="uvicorn x2,stock": only the web configurations whose name contains one of these,
# and scenario 1 only (the fan-out rows and their framework-free ceiling); with
# BENCH_ONLY=web_configs their rows replace those of the same configurations in results.json.
CONFIGS = [name.strip() for name in os.environ.get("BENCH_CONFIGS", "").split(",") if name.strip()]
# Where results go (and what BENCH_ONLY merges into): a one-off comparison can leave the
# published results.json alone.
RESULTS = Path(os.environ.get("BENCH_RESULTS", "") or OUT / "results.json")
PG_QUERIES = 5 if QUICK else 20
# The login flood (scenario 10): 10 clients, as the issue that asked for the bound measured.
LOGIN_FLOOD_CLIENTS = 10
LOGIN_FLOOD_SECONDS = 8 if QUICK else 20
LOGIN_FLOOD_ROUNDS = 1 if QUICK else 2


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


# --- web configurations ------------------------------------------------------------------

GUNICORN = "gunicorn --config gunicorn.conf.py"
BENCH_ASGI = "bench_endpoints.asgi:application"
# The same around the handlers runtime.asgi's is measured against
# (bench/django/bench_endpoints/asgi_variants.py): Django's stock ASGIHandler, and the pooled one
# with Django's middleware hopping threads.
BENCH_ASGI_STOCK = "bench_endpoints.asgi_variants:stock"
BENCH_ASGI_HOPS = "bench_endpoints.asgi_variants:hops"
WSGI = "config.wsgi:application"


def cores() -> int:
    # The web container has no CPU limit: it sees the host's cores (gunicorn.conf.py's CORES).
    return os.cpu_count() or 1


def web_configs() -> list[dict[str, Any]]:
    """The configurations of scenario 1, as BENCH_CONFIGS selects them."""
    return select_configs(all_web_configs(), CONFIGS)


def all_web_configs() -> list[dict[str, Any]]:
    c = cores()
    configs: list[dict[str, Any]] = [
        {
            "name": f"sync x{2 * c + 1}",
            "profile": "cpu",
            "workers": 2 * c + 1,
            "command": f"{GUNICORN} {WSGI}",
            "path": "/bench/fanout/sync",
            "sync": True,
        },
        {
            "name": f"gthread x{c + 1}x4",
            "profile": "mixed",
            "workers": c + 1,
            "command": f"{GUNICORN} {WSGI}",
            "path": "/bench/fanout/sync",
            "sync": True,
        },
        {
            # The seed's legacy row: Gunicorn's gevent worker (bench image only) on the WSGI app
            # and the sync view, whose blocking calls gevent's patched sockets turn into yields.
            # Still one call after another: 0.9 s a request, so its own limit is 100 / 0.9 s.
            "name": f"gevent x{2 * c + 1}",
            "profile": "cpu",
            "workers": 2 * c + 1,
            "worker_class": "gevent",
            "command": f"{GUNICORN} {WSGI}",
            "path": "/bench/fanout/sync",
        },
        {
            "name": f"uvicorn x{c}",
            "profile": "io",
            "workers": c,
            "command": f"{GUNICORN} {BENCH_ASGI}",
            "path": "/bench/fanout/async",
            "default": True,
        },
        {
            # What runtime.asgi changed, one step at a time: Django's stock handler (a new executor
            # per request, a thread hop per middleware method), then pooled executors alone.
            "name": f"uvicorn x{c} (stock Django handler)",
            "profile": "io",
            "workers": c,
            "command": f"{GUNICORN} {BENCH_ASGI_STOCK}",
            "path": "/bench/fanout/async",
            "full_only": True,
        },
        {
            "name": f"uvicorn x{c} (pooled, thread hops)",
            "profile": "io",
            "workers": c,
            "command": f"{GUNICORN} {BENCH_ASGI_HOPS}",
            "path": "/bench/fanout/async",
            "full_only": True,
        },
        {
            # The default with the sync workers' recycling count: a recycle every few seconds
            # at this rate, each a ~4 s drain (gunicorn.conf.py's io max_requests says why).
            "name": f"uvicorn x{c} (max_requests 1000)",
            "profile": "io",
            "workers": c,
            "command": f"{GUNICORN} {BENCH_ASGI}",
            "path": "/bench/fanout/async",
            "env": {"GUNICORN_MAX_REQUESTS": "1000"},
            "full_only": True,
        },
        {
            "name": f"uvicorn x{2 * c}",
            "profile": "io",
            "workers": 2 * c,
            "command": f"{GUNICORN} {BENCH_ASGI}",
            "path": "/bench/fanout/async",
            "full_only": True,
        },
        {
            # Gunicorn 27's own asyncio ASGI worker (gunicorn.workers.gasgi).
            "name": f"gunicorn-asgi x{c}",
            "profile": "io",
            "workers": c,
            "worker_class": "asgi",
            "command": f"{GUNICORN} {BENCH_ASGI}",
            "path": "/bench/fanout/async",
            "full_only": True,
        },
    ]
    if QUICK:
        # The seed's four (sync, gthread, gevent, Uvicorn) and Gunicorn's own ASGI worker.
        configs = [config for config in configs if not config.get("full_only")]
    else:
        configs.append(
            {
                # Uvicorn's own process manager, no Gunicorn (no gunicorn.conf.py hooks).
                "name": f"uvicorn-standalone x{c}",
                "profile": "io",
                "workers": c,
                "command": (
                    f"uvicorn {BENCH_ASGI} --host 0.0.0.0 --port 8000 --workers {c} "
                    "--no-access-log --timeout-keep-alive 75 --backlog 2048"
                ),
                "path": "/bench/fanout/async",
            }
        )
    return configs


def select_configs(configs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """BENCH_CONFIGS: the configurations whose name contains one of `names` (all when empty)."""
    if not names:
        return configs
    return [config for config in configs if any(name in config["name"] for name in names)]


def default_config() -> dict[str, Any]:
    """The production profile (GUNICORN_PROFILE=io), whatever BENCH_CONFIGS selects."""
    return next(config for config in all_web_configs() if config.get("default"))


def web_env(config: dict[str, Any], *, preload: bool = True) -> dict[str, str]:
    return {
        "BENCH_WEB_COMMAND": config["command"],
        "GUNICORN_PROFILE": config["profile"],
        "GUNICORN_WORKERS": str(config["workers"]),
        "GUNICORN_WORKER_CLASS": config.get("worker_class", ""),
        "GUNICORN_THREADS": "",
        "GUNICORN_PRELOAD": "true" if preload else "false",
        # The profile's own unless the configuration says otherwise.
        "GUNICORN_MAX_REQUESTS": "",
        "GUNICORN_MAX_REQUESTS_JITTER": "",
        **config.get("env", {}),
    }


def switch_web(config: dict[str, Any], *, preload: bool = True) -> float:
    """Recreates only web with the configuration's environment; returns seconds to healthy.
    Always a new container: with an unchanged environment compose would keep the running one,
    and a measurement would start from the previous scenario's warm (or bloated) workers."""
    started = time.monotonic()
    compose(
        "up", "-d", "--no-deps", "--force-recreate", "--wait", "--wait-timeout", "120", "web",
        extra=web_env(config, preload=preload),
    )  # fmt: skip
    wait_http("/healthz")
    return round(time.monotonic() - started, 1)


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


# --- scenarios ------------------------------------------------------------------------------


def scenario_web_configs(results: dict[str, Any]) -> None:
    """Scenarios 1, 3 and 4: every configuration of web is started once per round and
    measured; the rounds interleave the configurations, so a burst of load from elsewhere on the
    machine hits one round of each, not every run of one configuration. With BENCH_CONFIGS,
    scenario 1's selected rows only."""
    # Filled as the runs finish, so a failure halfway keeps what was measured.
    fanout: list[dict[str, Any]] = []
    detail: list[dict[str, Any]] = []
    ceiling: list[dict[str, Any]] = []
    switches: list[dict[str, Any]] = []
    results["worker_classes"] = {
        "limit_rps": round(FANOUT_LIMIT_RPS, 1),
        "upstream_ms": UPSTREAM_MS,
        "calls": CALLS,
        "runs": fanout,
        "switch_seconds": switches,
        "default_config": default_config()["name"],
    }
    if CONFIGS:
        # What merge_partial merges row by row into the published scenario 1.
        results["worker_classes"]["configs"] = [config["name"] for config in web_configs()]
        results["worker_classes"]["configs_order"] = [c["name"] for c in all_web_configs()]
    else:
        results["product_detail"] = {"upstream_ms": 50, "runs": detail}
        results["product_list_vs_hello"] = {"runs": ceiling}
    for round_ in range(1, ROUNDS + 1):
        for config in web_configs():
            log(f"round {round_}: web as {config['name']}")
            seconds = switch_web(config)
            switches.append({"config": config["name"], "round": round_, "seconds": seconds})
            path = config["path"]
            sync = config.get("sync", False)
            # At the measured concurrency: the worker's upstream pool and Nginx's keep-alive
            # connections grow to their working size before the clock starts, for every row
            # alike (the framework-free one below reuses this worker's warm pool otherwise).
            warm(path, n=20 if sync else N_WARM, c=10 if sync else 100)
            labels = {"config": config["name"], "round": round_}
            fanout.append(load(path, c=100, n=N_SYNC if sync else N_ASYNC, label="c100", **labels))
            # c=1000 for the async and gevent workers only: five sync workers at 0.9 s a
            # request would queue 1,000 clients past Nginx's 35 s read timeout; that is known.
            if not sync and (not QUICK or config.get("default")):
                fanout.append(load(path, c=1000, seconds=C1000_SECONDS, label="c1000", **labels))
            if not config.get("default"):
                continue
            # The default (production) profile also serves the other scenarios.
            warm("/bench/raw/fanout", n=N_WARM, c=100)
            raw = {"config": f"raw ASGI ({config['name']})", "round": round_}
            fanout.append(load("/bench/raw/fanout", c=100, n=N_ASYNC, label="c100", **raw))
            # The ceiling at c=1000 (the I/O limit, 3,333 req/s, is out of reach of 2 cores).
            fanout.append(
                load("/bench/raw/fanout", c=1000, seconds=C1000_SECONDS, label="c1000", **raw)
            )
            if CONFIGS:
                continue
            # Scenario 3: product detail (database, Redis, two 50 ms upstream calls).
            warm("/api/products/1")
            for c in (1000,) if QUICK else (100, 1000):
                detail.append(
                    load("/api/products/1", c=c, seconds=DETAIL_SECONDS, label=f"c{c}", **labels)
                )
            # Scenario 4: the cached product list vs a framework-free hello world.
            warm("/api/products")
            warm("/bench/raw/hello")
            for name, ceiling_path in ALTERNATIONS * (
                ("GET /api/products (cached)", "/api/products"),
                ("raw ASGI hello world", "/bench/raw/hello"),
            ):
                ceiling.append(
                    load(ceiling_path, c=50, seconds=CEILING_SECONDS, label=name, **labels)
                )


# Scenario 2: the fan-out's HTTP client. The first two are the seed's (httpx; per request is
# its code), the third the app's own (shop/upstream.py), the fourth that one made per request.
HTTP_CLIENTS = (
    ("shared httpx client", "/bench/fanout/async-httpx"),
    ("httpx client per request", "/bench/fanout/async-httpx-new-client"),
    ("shared aiohttp session", "/bench/fanout/async"),
    ("aiohttp session per request", "/bench/fanout/async-new-client"),
)[: 3 if QUICK else 4]  # quick: the three the claims name


def scenario_http_client(results: dict[str, Any]) -> None:
    """Scenario 2: the four clients in the default web configuration, same view shape and load
    (c=100, n=1000), taking turns (A, B, C, D, A, B, ...) so a burst of load from elsewhere
    hits every client alike."""
    if CONFIGS and "http_client" not in ONLY:
        return  # BENCH_CONFIGS alone: scenario 1 only
    runs: list[dict[str, Any]] = []
    rotations = ROUNDS * ALTERNATIONS
    results["http_client"] = {"rotations": rotations, "runs": runs}
    default = default_config()
    log(f"http clients: web as {default['name']}")
    switch_web(default)
    for _, path in HTTP_CLIENTS:
        warm(path)
    for rotation in range(1, rotations + 1):
        for label, path in HTTP_CLIENTS:
            runs.append(
                load(path, c=100, n=N_CLIENT, label=label, config=default["name"], round=rotation)
            )


def scenario_preload(results: dict[str, Any]) -> None:
    """Scenario 5: Uvicorn workers' memory with preload_app on and off, after the same warm-up;
    on and off alternate at each worker count."""
    base = default_config()
    rows = []
    for workers in PRELOAD_WORKERS:
        for preload in (True, False):
            config = {**base, "workers": workers}
            log(f"preload={preload} workers={workers}")
            switch_web(config, preload=preload)
            # Enough requests that every worker has served the list, the detail and a fan-out.
            for path in ("/api/products", "/api/products/1", "/bench/fanout/async?latency_ms=0"):
                warm(path, n=50 * workers, c=4 * workers)
            time.sleep(1)
            memory = in_web(incontainer.script("gunicorn_memory"))
            workers_found = memory["workers"]
            rows.append(
                {
                    "workers": workers,
                    "preload": preload,
                    "workers_found": len(workers_found),
                    "workers_pss_mb": round(sum(w["pss_kb"] for w in workers_found) / 1024, 1),
                    "workers_uss_mb": round(sum(w["uss_kb"] for w in workers_found) / 1024, 1),
                    "workers_rss_mb": round(sum(w["rss_kb"] for w in workers_found) / 1024, 1),
                    "master_pss_mb": round(memory["master"]["pss_kb"] / 1024, 1),
                }
            )
            log(f"  {rows[-1]}")
    results["preload"] = {"rows": rows}


def scenario_pgbouncer(results: dict[str, Any]) -> None:
    """Scenario 6: 1,000 clients through PgBouncer and straight at Postgres (max_connections
    50), plus 20 clients each way: the overhead of the pooler where both can serve everyone
    (20, because PgBouncer's own idle server connections still count against the 50)."""
    ini = compose("exec", "-T", "pgbouncer", "cat", "/tmp/pgbouncer/pgbouncer.ini").stdout
    settings = dict(
        (part.strip() for part in line.split("=", 1))
        for line in ini.splitlines()
        if "=" in line and not line.lstrip().startswith((";", "#", "["))
    )
    rows = []
    for clients in (PG_CLIENTS, 20):
        for target in ("pgbouncer", "direct"):
            log(f"postgres: {clients} clients via {target}")
            command = pgbouncer_clients.args(clients=clients, queries=PG_QUERIES, target=target)
            out = compose("exec", "-T", "web", *command, timeout=300).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            log(f"  {rows[-1]}")
            time.sleep(2)  # let Postgres reap the direct backends before the next run
    max_connections = compose(
        "exec", "-T", "db-primary", "psql", "-U", "postgres", "-XAtqc", "SHOW max_connections"
    ).stdout.strip()
    results["pgbouncer"] = {
        "pool_size": int(settings.get("default_pool_size", "0")),
        "reserve_pool_size": int(settings.get("reserve_pool_size", "0")),
        "max_client_conn": int(settings.get("max_client_conn", "0")),
        "postgres_max_connections": int(max_connections or 0),
        "rows": rows,
    }


# Scenario 7's script (bench/incontainer/report_memory.py), run in worker-reports.
REPORT_SCRIPT = incontainer.script("report_memory")
REPORT_SIZES = [10_000, 100_000] if QUICK else [10_000, 100_000, 1_000_000]


def order_count() -> int:
    out = compose(
        "exec", "-T", "db-primary", "psql", "-U", "postgres", "-d", "app", "-XAtqc",
        "SELECT count(*) FROM shop_order",
    ).stdout  # fmt: skip
    return int(out.strip())


def scenario_reports(results: dict[str, Any]) -> None:
    """Scenario 7: the report over 10k, 100k (and 1M) orders, one run each in the same worker.

    The orders are seeded in steps (INSERT ... SELECT on the primary, manage.py seed) up to each
    size, spread over the past 365 days, and every report covers the whole year, so it reads
    every order. worker-reports runs with one pool child (CELERY_CONCURRENCY=1), so the warm-up
    report and every measured one run in the same process: no row pays the child's first-task
    imports, and no row is measured in a different process than the others.
    """
    rows: list[dict[str, Any]] = []
    results["reports"] = {
        "sizes": REPORT_SIZES,
        "chunk_size": 2000,
        "concurrency": 1,
        "memory_source": "VmHWM of the pool child, reset (clear_refs 5) before each report",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
    }
    compose(
        "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "worker-reports",
        extra={"CELERY_CONCURRENCY": "1"},
    )  # fmt: skip
    warmup = in_web_service("worker-reports", REPORT_SCRIPT, str(order_count()), "warm-up")
    log(f"  warm-up report: {warmup}")
    results["reports"]["warmup"] = warmup
    for size in REPORT_SIZES:
        missing = size - order_count()
        log(f"reports: seeding {missing} orders (to {size})")
        started = time.monotonic()
        while missing > 0:
            # 100,000 per command: each run of seed is a few transactions of 50,000 orders.
            batch = min(missing, 100_000)
            proc = compose(
                "exec", "-T", "web", "python3", "manage.py", "seed", "--orders", str(batch),
                timeout=900, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"seed failed: {(proc.stderr or proc.stdout)[-1500:]}")
            missing -= batch
        log(f"  seeded in {time.monotonic() - started:.0f} s")
        # What autovacuum does to a table of this size sooner or later: statistics for the
        # planner, hint bits and the visibility map set (the replica replays them). Without
        # it the first report after a bulk insert pays for that instead, and the row measures
        # the seeding more than the report.
        started = time.monotonic()
        compose(
            "exec", "-T", "db-primary", "psql", "-U", "postgres", "-d", "app", "-XAtqc",
            "VACUUM (ANALYZE) shop_order, shop_orderitem", timeout=900,
        )  # fmt: skip
        vacuum_s = round(time.monotonic() - started, 1)
        log(f"  vacuumed in {vacuum_s} s")
        row = in_web_service("worker-reports", REPORT_SCRIPT, str(size), f"{size:,}", timeout=900)
        row["vacuum_seconds"] = vacuum_s
        rows.append(row)
        log(f"  {row}")
    results["reports"]["load_average_end"] = list(os.getloadavg())


# --- observability: metrics and tracing on vs off ---------------------------------------------

OBSERVABILITY_SECONDS = 4 if QUICK else 10
# Off/on alternations: the ratio of one pair is at the mercy of whatever else the machine runs.
OBSERVABILITY_ROUNDS = 1 if QUICK else 2
# Both off: no Prometheus recording, tracing not even imported. Both on: every request recorded
# in the metrics and traced (server span, SQL, Redis and upstream spans) and exported over
# OTLP/HTTP to otlp-sink, which answers without decoding (bench/compose.bench.yml).
OBSERVABILITY = {
    "off": {"METRICS_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ""},
    "on": {"METRICS_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otlp-sink:4318"},
}
# The product page (database, Redis, two upstream calls: the most spans per request) and the
# cached product list (the least work per request, so the highest relative cost).
OBSERVABILITY_PATHS = (("/api/products/1", 100), ("/api/products", 50))[: 1 if QUICK else 2]


def web_cpu_seconds() -> float:
    """CPU time the web container has used (every process, exited workers included), from its
    cgroup: v2 cpu.stat usage_usec, or v1 cpuacct.usage (ns)."""
    out = compose(
        "exec", "-T", "web", "sh", "-c",
        "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage",
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("usage_usec"):
            return int(line.split()[1]) / 1e6
    return int(out.split()[0]) / 1e9


def scenario_observability(results: dict[str, Any]) -> None:
    """Metrics and tracing on vs off in the default web configuration, alternated in one run:
    the row is the ratio of their throughputs, next to web's CPU time per request (which other
    loads on a shared machine disturb far less than they disturb throughput)."""
    runs: list[dict[str, Any]] = []
    results["observability"] = {"seconds": OBSERVABILITY_SECONDS, "runs": runs}
    default = default_config()
    compose("up", "-d", "--no-deps", "--wait", "--wait-timeout", "60", "otlp-sink")
    try:
        for round_ in range(1, OBSERVABILITY_ROUNDS + 1):
            for state, env in OBSERVABILITY.items():
                log(f"round {round_}: metrics and tracing {state}")
                compose(
                    "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "web",
                    extra={**web_env(default), **env},
                )  # fmt: skip
                wait_http("/healthz")
                for path, c in OBSERVABILITY_PATHS:
                    warm(path)
                    cpu_before = web_cpu_seconds()
                    run = load(
                        path, c=c, seconds=OBSERVABILITY_SECONDS, label=state, round=round_,
                        config=default["name"],
                    )  # fmt: skip
                    cpu = web_cpu_seconds() - cpu_before
                    run["web_cpu_ms_per_ok"] = (
                        round(1000 * cpu / run["ok"], 3) if run["ok"] else None
                    )
                    runs.append(run)
    finally:
        switch_web(default)
        compose("rm", "--stop", "--force", "otlp-sink", check=False)


def scenario_login_flood(results: dict[str, Any]) -> None:
    """Scenario 10: the cached product list with and without a login flood, alternated in one
    run in the default configuration: what the per-process hash gate (accounts/throttle.py)
    leaves the readers. Nginx's per-address login limit is lifted (compose_env), as if the
    flood came from many addresses."""
    runs: list[dict[str, Any]] = []
    results["login_flood"] = {
        "seconds": LOGIN_FLOOD_SECONDS, "clients": LOGIN_FLOOD_CLIENTS, "runs": runs
    }  # fmt: skip
    default = default_config()
    switch_web(default)
    path = "/api/products?page=1&page_size=20"
    warm(path, n=500, c=50)
    for round_ in range(1, LOGIN_FLOOD_ROUNDS + 1):
        for state in ("off", "on"):
            log(f"round {round_}: login flood {state}")
            if state == "off":
                run = load(path, c=50, seconds=LOGIN_FLOOD_SECONDS, label=state, round=round_)
            else:
                with LoginFlood(BASE, clients=LOGIN_FLOOD_CLIENTS) as flood:
                    run = load(path, c=50, seconds=LOGIN_FLOOD_SECONDS, label=state, round=round_)
                run["logins"] = dict(flood.statuses)
                log(f"  logins answered: {dict(flood.statuses)}")
            runs.append(run)


def in_web_service(service: str, script: str, *args: str, timeout: float = 300) -> Any:
    """in_web, in another container of the Django image."""
    out = compose("exec", "-T", service, "python3", "-c", script, *args, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def image_sizes(results: dict[str, Any], cold_start: dict[str, Any]) -> None:
    """Scenario 8: every image of the stack, and the web image against a single-stage stand-in
    (the Dockerfile's builder stage, which holds compilers, headers and pip's leftovers)."""
    names = ["web", "nginx", "upstream", "redis", "pgbouncer", "postgres", "mailcatcher"]
    sizes = {}
    for name in names:
        out = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", f"djstack/{name}:{TAG}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if out:
            sizes[name] = int(out)
    single = f"djstack/web-single-stage:{TAG}"
    build = [
        "docker", "build", "--target", "builder", "-t", single,
        "--build-arg", f"BASE_IMAGE={os.environ.get('BASE_IMAGE', 'debian:trixie-slim')}",
        "--secret", f"id=ca_bundle,src={os.environ.get('BUILD_CA_BUNDLE') or '/dev/null'}",
        ".",
    ]  # fmt: skip
    log("building the builder stage as the single-stage stand-in")
    subprocess.run(build, cwd=ROOT, capture_output=True, check=True, timeout=900)
    single_size = int(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", single],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    results["images"] = {
        "sizes_bytes": sizes,
        "web_single_stage_bytes": single_size,
        "web_limit_bytes": 200 * 1000 * 1000,
        "cold_start": cold_start,
    }


# --- the run ----------------------------------------------------------------------------------


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


def cold_start() -> dict[str, Any]:
    """`docker compose up --wait` from nothing (volumes included) with the images built."""
    compose("down", "-v", "--remove-orphans", check=False)
    started = time.monotonic()
    proc = compose("up", "-d", "--wait", "--wait-timeout", "240", *SERVICES, check=False)
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"compose up failed:\n{proc.stderr[-3000:]}")
    return {"seconds": seconds, "services": SERVICES}


def step(results: dict[str, Any], name: str, fn: Callable[[dict[str, Any]], None]) -> None:
    """One scenario; a failure is recorded and the next scenario still runs."""
    if ONLY and name not in ONLY:
        return
    started = time.monotonic()
    try:
        fn(results)
    except Exception as exc:  # reported in results.json and the Markdown
        log(f"{name} failed: {exc}")
        results.setdefault("failures", {})[name] = f"{type(exc).__name__}: {exc}"[:2000]
    results.setdefault("step_seconds", {})[name] = round(time.monotonic() - started, 1)


def merge_partial(new: dict[str, Any]) -> dict[str, Any]:
    """A BENCH_ONLY run: its scenarios replace theirs in the last full results.json, and the
    run is listed under meta.partial_runs (the table headers keep the full run's meta)."""
    path = RESULTS
    if not path.exists():
        return new
    merged: dict[str, Any] = json.loads(path.read_text())
    for key, value in new.items():
        if key == "worker_classes" and "configs" in value and key in merged:
            merged[key] = merge_configs(merged[key], value)
        elif key not in ("meta", "failures", "step_seconds"):
            merged[key] = value
    failures = {k: v for k, v in merged.get("failures", {}).items() if k not in ONLY}
    failures.update(new.get("failures", {}))
    merged.pop("failures", None)
    if failures:
        merged["failures"] = failures
    merged.setdefault("step_seconds", {}).update(new.get("step_seconds", {}))
    # One entry per scenario set (and configuration set): the run whose figures the file holds.
    entry = {"only": sorted(ONLY), **({"configs": CONFIGS} if CONFIGS else {}), **new["meta"]}
    runs = [
        r
        for r in merged["meta"].get("partial_runs", [])
        if (set(r["only"]), r.get("configs", [])) != (ONLY, CONFIGS)
    ]
    merged["meta"]["partial_runs"] = [*runs, entry]
    return merged


def merge_configs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Scenario 1 of a BENCH_CONFIGS run into the published one: the new run's configurations
    (and the raw ASGI row measured beside one of them) replace their rows, the others stay;
    the rows are ordered as the configurations are listed (new.configs_order)."""
    replaced = set(new["configs"]) | {run["config"] for run in new["runs"]}
    order: list[str] = new.get("configs_order") or []

    def position(config: str) -> float:
        # "raw ASGI (uvicorn x2)" right after "uvicorn x2"; unknown names last.
        base = config[len("raw ASGI (") : -1] if config.startswith("raw ASGI (") else config
        offset = 0.5 if base != config else 0.0
        return order.index(base) + offset if base in order else len(order) + offset

    def merged(key: str) -> list[dict[str, Any]]:
        kept = [r for r in old.get(key, []) if r["config"] not in replaced]
        return sorted([*kept, *new.get(key, [])], key=lambda r: position(r["config"]))

    return {**old, "runs": merged("runs"), "switch_seconds": merged("switch_seconds")}


def main() -> int:
    if not shutil.which("hey"):
        sys.exit("hey is not installed: `apt-get install -y hey` (make bench does it as root)")
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {
        "meta": {
            "quick": QUICK,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "host": host_info(),
            "load_average_start": list(os.getloadavg()),
            "project": PROJECT,
            "rounds": ROUNDS,
        }
    }
    try:
        log(f"building images (tag {TAG})")
        build_started = time.monotonic()
        # The Django images first (runtime, built by migrate here; web's bench image on top):
        # the nginx image copies its static files out of the runtime image.
        compose("build", "migrate", "web", timeout=1800)
        compose("build", timeout=1800)
        results["meta"]["build_seconds"] = round(time.monotonic() - build_started, 1)
        log("cold start")
        start = cold_start()
        log(f"healthy after {start['seconds']} s")
        compose("exec", "-T", "web", "python3", "manage.py", "seed", "--orders", "1000")
        step(results, "web_configs", scenario_web_configs)
        step(results, "http_client", scenario_http_client)
        step(results, "preload", scenario_preload)
        step(results, "pgbouncer", scenario_pgbouncer)
        step(results, "reports", scenario_reports)
        step(results, "observability", scenario_observability)
        step(results, "login_flood", scenario_login_flood)
        step(results, "images", lambda r: image_sizes(r, start))
    finally:
        log("tearing down")
        compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        finished = time.time()
        results["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished))
        results["meta"]["wall_seconds"] = round(finished - started, 1)
        results["meta"]["load_average_end"] = list(os.getloadavg())
        wall = results["meta"]["wall_seconds"]
        if ONLY:
            results = merge_partial(results)
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
        log(f"wrote {RESULTS} (this run: {wall} s)")
    return 1 if results.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
