"""The web configurations `make bench` measures (scenario 1's rows; the default one serves every
other scenario), and recreating web as one of them."""

import os
import time
from typing import Any

from bench import stack

GUNICORN = "gunicorn --config gunicorn.conf.py"
BENCH_ASGI = "bench_endpoints.asgi:application"
# The same around the handlers runtime.asgi's is measured against
# (bench/django/bench_endpoints/asgi_variants.py): Django's stock ASGIHandler, and the pooled one
# with Django's middleware hopping threads.
BENCH_ASGI_STOCK = "bench_endpoints.asgi_variants:stock"
BENCH_ASGI_HOPS = "bench_endpoints.asgi_variants:hops"
WSGI = "config.wsgi:application"
# GUNICORN_REQUEST_THREADS's default (runtime/config.py), and the counts measured against it.
REQUEST_THREADS = 64
REQUEST_THREADS_TRIED = (REQUEST_THREADS // 2, REQUEST_THREADS * 2)


def request_threads_config(threads: int) -> str:
    """The default configuration's name with `threads` request threads per worker."""
    return f"uvicorn x{cores()} ({threads} request threads)"


def is_request_threads_config(name: str) -> bool:
    """A variant of the default (request_threads_config), not an alternative server."""
    return name.endswith(" request threads)")


def cpu_seconds(service: str = "web") -> float:
    """CPU time a service's container has used (every process, exited ones included), from its
    cgroup: v2 cpu.stat usage_usec, or v1 cpuacct.usage (ns)."""
    out = stack.compose(
        "exec", "-T", service, "sh", "-c",
        "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage",
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("usage_usec"):
            return int(line.split()[1]) / 1e6
    return int(out.split()[0]) / 1e9


def measured_load(path: str, **kwargs: Any) -> dict[str, Any]:
    """stack.load, with web's CPU time over the run: per answered request (web_cpu_ms_per_ok)
    and in cores (web_cores: CPU seconds per second of the run)."""
    before = cpu_seconds()
    run = stack.load(path, **kwargs)
    cpu = cpu_seconds() - before
    run["web_cpu_ms_per_ok"] = round(1000 * cpu / run["ok"], 3) if run["ok"] else None
    run["web_cores"] = round(cpu / run["wall_s"], 2) if run["wall_s"] else None
    return run


def standalone(command: str) -> str:
    """A server run without Gunicorn: no gunicorn.conf.py hands its workers the metrics
    directory (GUNICORN_METRICS_DIR) or creates it, so the command does."""
    return (
        'sh -c \'export PROMETHEUS_MULTIPROC_DIR="$GUNICORN_METRICS_DIR" && '
        f'mkdir -p "$PROMETHEUS_MULTIPROC_DIR" && exec {command}\''
    )


def cores() -> int:
    # The web container has no CPU limit: it sees the host's cores (gunicorn.conf.py's CORES).
    return os.cpu_count() or 1


def web_configs() -> list[dict[str, Any]]:
    """The configurations of scenario 1, as BENCH_CONFIGS selects them."""
    return select_configs(all_web_configs(), stack.CONFIGS)


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
            "product_page": True,
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
            # The default with Uvicorn's own protocol: a response's head and body in two writes
            # (runtime/http_protocol.py's one write, measured). Not an alternative server.
            "name": f"uvicorn x{c} (head and body in two writes)",
            "profile": "io",
            "workers": c,
            "worker_class": "bench_endpoints.workers.TwoWritesUvicornWorker",
            "command": f"{GUNICORN} {BENCH_ASGI}",
            "path": "/bench/fanout/async",
            "full_only": True,
        },
        {
            "name": f"uvicorn x{2 * c}",
            "profile": "io",
            "workers": 2 * c,
            "command": f"{GUNICORN} {BENCH_ASGI}",
            "path": "/bench/fanout/async",
            "full_only": True,
            "product_page": True,
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
            "product_page": True,
        },
        {
            # Uvicorn's own process manager, no Gunicorn (no gunicorn.conf.py hooks).
            "name": f"uvicorn-standalone x{c}",
            "profile": "io",
            "workers": c,
            "command": standalone(
                f"uvicorn {BENCH_ASGI} --host 0.0.0.0 --port 8000 --workers {c} "
                "--no-access-log --timeout-keep-alive 75 --backlog 2048"
            ),
            "path": "/bench/fanout/async",
            "full_only": True,
            "product_page": True,
        },
        {
            # Granian (Rust HTTP server, ASGI interface with lifespan), its own process
            # manager and the same worker count, no Gunicorn.
            "name": f"granian x{c}",
            "profile": "io",
            "workers": c,
            "command": standalone(
                f"granian --interface asgi --host 0.0.0.0 --port 8000 --workers {c} "
                f"--http 1 --no-ws --backlog 2048 {BENCH_ASGI}"
            ),
            "path": "/bench/fanout/async",
            "full_only": True,
            "product_page": True,
        },
        *(
            {
                # The default with fewer and more request threads per worker (runtime/asgi.py):
                # not an alternative server, the choice of the default's own limit.
                "name": request_threads_config(threads),
                "profile": "io",
                "workers": c,
                "command": f"{GUNICORN} {BENCH_ASGI}",
                "path": "/bench/fanout/async",
                "env": {"GUNICORN_REQUEST_THREADS": str(threads)},
                "full_only": True,
                "product_page": True,
            }
            for threads in REQUEST_THREADS_TRIED
        ),
    ]
    if stack.QUICK:
        # The seed's four (sync, gthread, gevent, Uvicorn), and any other BENCH_CONFIGS names
        # exactly: a quick trial of one alternative stays short.
        configs = [
            config
            for config in configs
            if not config.get("full_only") or config["name"] in stack.CONFIGS
        ]
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
        "GUNICORN_REQUEST_THREADS": "",
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
    stack.compose(
        "up", "-d", "--no-deps", "--force-recreate", "--wait", "--wait-timeout", "120", "web",
        extra=web_env(config, preload=preload),
    )  # fmt: skip
    stack.wait_http("/healthz")
    return round(time.monotonic() - started, 1)
