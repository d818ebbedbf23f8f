#!/usr/bin/env python3
"""`make profile`: where a web worker's CPU goes on the fan-out view (scenario 1's load, c=100),
sampled with py-spy from the host, for the default ASGI handler and the ones it is measured
against (bench/django/bench_endpoints/asgi_variants.py). Writes docs/benchmarks/profile.md: per
handler, the share of samples by package (where the time is spent, leaf frame) and the functions
with the most samples.

Uses `make bench`'s project, images and harness (bench/stack.py), and builds its web images.
py-spy runs as root on the host and reads the workers' memory by their host PIDs; it is installed
into build/py-spy from PyPI when missing. Bounded: PROFILE_SECONDS
of sampling per target while hey runs for 5 s longer.
"""
# ruff: noqa: S603, S607

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import hey, stack, web

SECONDS = int(os.environ.get("PROFILE_SECONDS", "20"))
RATE = 200  # samples per second per process: py-spy's overhead stays near 1% of a core
FANOUT = "/bench/fanout/async"
LIST = "/api/products"
# (name, ASGI app, path, concurrency): the fan-out (scenario 1) under each handler, and the cached
# product list (scenario 4, c=50 as there) under the default one.
TARGETS = (
    ("fan-out, default handler", web.BENCH_ASGI, FANOUT, 100),
    ("fan-out, pooled with thread hops", web.BENCH_ASGI_HOPS, FANOUT, 100),
    ("fan-out, stock Django handler", web.BENCH_ASGI_STOCK, FANOUT, 100),
    ("cached list, default handler", web.BENCH_ASGI, LIST, 50),
)
# The package a leaf frame's file belongs to, first match wins.
PACKAGES = (
    ("django/", "Django"),
    ("asgiref/", "asgiref (sync/async bridge)"),
    ("ninja/", "django-ninja"),
    ("uvicorn/", "Uvicorn"),
    ("httptools", "httptools"),
    ("aiohttp/", "aiohttp (upstream client)"),
    ("multidict", "aiohttp (upstream client)"),
    ("yarl/", "aiohttp (upstream client)"),
    ("prometheus_client/", "prometheus_client"),
    ("concurrent/futures", "threads and executors"),
    ("threading.py", "threads and executors"),
    ("asyncio/", "asyncio / uvloop"),
    ("uvloop", "asyncio / uvloop"),
    ("/app/core/", "app: core"),
    ("/app/", "app: other"),
    ("/opt/bench/", "app: other"),  # bench/django/, the bench image's endpoints
    ("logging/", "logging"),
    ("json/", "json"),
)
# Inclusive: samples whose stack passes through these frames (callees included).
THROUGH = (
    (
        "Django's handler and middleware",
        ("django/core/handlers", "django/middleware", "django/contrib"),
    ),
    ("asgiref (thread hops, contexts)", ("asgiref/",)),
    ("the view's upstream calls (aiohttp)", ("aiohttp/",)),
    ("Uvicorn's HTTP protocol", ("uvicorn/protocols",)),
    ("Redis client", ("redis/",)),
    ("django-ninja", ("ninja/",)),
    ("the app's own middleware", ("core/middleware.py", "runtime/middleware.py")),
)
OUT = stack.OUT / "profile.md"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(stack.ROOT / "build" / "py-spy" / "bin" / "py-spy")
    if Path(found).exists():
        return found
    venv = stack.ROOT / "build" / "py-spy"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ca = os.environ.get("BUILD_CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt"
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--cert", ca, "py-spy"], check=True)
    return str(venv / "bin" / "py-spy")


def master_pid() -> int:
    """Gunicorn's master in web, by host PID (`docker top`)."""
    container = stack.compose("ps", "-q", "web").stdout.strip()
    out = subprocess.run(
        ["docker", "top", container, "-eo", "pid,ppid,args"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    procs = {}
    for line in out.splitlines()[1:]:
        pid, ppid, args = line.split(None, 2)
        if "gunicorn" in args and "docker-init" not in args:
            procs[int(pid)] = int(ppid)
    return next(pid for pid, ppid in procs.items() if ppid not in procs)


def package(frame: str) -> str:
    for needle, name in PACKAGES:
        if needle in frame:
            return name
    return "other (stdlib, C)"


def summarise(collapsed: str) -> dict[str, Any]:
    by_package: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    through: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        total += int(count)
        by_package[package(leaf)] += int(count)
        by_function[leaf] += int(count)
        for name, needles in THROUGH:
            if any(needle in stack for needle in needles):
                through[name] += int(count)
    return {"total": total, "packages": by_package, "functions": by_function, "through": through}


def profile(name: str, app: str, path: str, c: int, spy: str) -> dict[str, Any]:
    config = {**web.default_config(), "command": f"{web.GUNICORN} {app}"}
    stack.log(f"profile: {name}")
    web.switch_web(config)
    stack.warm(path)
    out = stack.ROOT / "build" / "profile.txt"
    out.parent.mkdir(exist_ok=True)
    load = subprocess.Popen(
        ["hey", "-c", str(c), "-z", f"{SECONDS + 5}s", "-t", "30", stack.BASE + path],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    record = [
        # --gil: only the thread holding the GIL, i.e. Python's CPU time (the idle executor
        # threads would otherwise fill the samples).
        spy, "record", "--pid", str(master_pid()), "--subprocesses", "--nonblocking", "--gil",
        "--format", "raw", "--rate", str(RATE), "--duration", str(SECONDS), "--output", str(out),
    ]  # fmt: skip
    subprocess.run(record, capture_output=True, check=True, timeout=SECONDS + 60)
    stdout, _ = load.communicate(timeout=SECONDS + 120)
    summary = summarise(out.read_text())
    summary["load"] = hey.parse(stdout)
    return summary


def cpu_ms_per_request(summary: dict[str, Any]) -> float:
    answered = summary["load"].get("ok_rps", 0) * SECONDS
    return 1000 * summary["total"] / RATE / answered if answered else 0.0


def markdown(results: list[tuple[str, dict[str, Any]]]) -> str:
    host = stack.host_info()
    lines = [
        "# Where a web worker's CPU goes: the fan-out view under load",
        "",
        f"`make profile` on {host['cores']} cores / {host['memory_gib']} GiB ({host['cpu']}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. py-spy samples both Uvicorn "
        f"workers ({RATE}/s each, {SECONDS} s, the thread holding the GIL) while hey keeps 100 "
        f"clients on `{FANOUT}` (three concurrent 300 ms upstream calls), or 50 on `{LIST}` "
        "(served from Redis), through Nginx. Shares are of samples by the leaf frame's "
        "package: the time a worker spends in each.",
        "",
    ]
    names = [name for name, _ in results]
    packages = sorted(
        {p for _, r in results for p in r["packages"]},
        key=lambda p: -results[0][1]["packages"].get(p, 0),
    )
    lines += ["| package | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for pkg in packages:
        cells = [f"{100 * r['packages'].get(pkg, 0) / max(r['total'], 1):.1f}%" for _, r in results]
        lines.append(f"| {pkg} | " + " | ".join(cells) + " |")
    lines.append("| **samples** | " + " | ".join(str(r["total"]) for _, r in results) + " |")
    rps = [f"{r['load'].get('ok_rps', 0):.0f}" for _, r in results]
    lines.append("| **ok req/s during sampling** | " + " | ".join(rps) + " |")
    cpu = [f"**{cpu_ms_per_request(r):.2f}**" for _, r in results]
    lines += ["| **Python CPU ms per request** | " + " | ".join(cpu) + " |", ""]
    lines += [
        "Python CPU per request: samples / rate / (req/s x seconds), i.e. the time the workers "
        "held the GIL per answered request (both workers sampled, so it is per request, not "
        "per worker).",
        "",
    ]
    lines += [
        "Inclusive: the share of samples whose stack passes through each (callees included).",
        "",
        "| through | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for through, _ in THROUGH:
        cells = [
            f"{100 * r['through'].get(through, 0) / max(r['total'], 1):.1f}%" for _, r in results
        ]
        lines.append(f"| {through} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, r in results:
        lines += [f"## Top functions: {name}", "", "| samples | share | function |"]
        lines.append("|---|---|---|")
        for function, count in r["functions"].most_common(15):
            share = 100 * count / max(r["total"], 1)
            lines.append(f"| {count} | {share:.1f}% | `{function}` |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    spy = py_spy()
    stack.OUT.mkdir(parents=True, exist_ok=True)
    try:
        # The Django images as make bench builds them (the cache makes this quick after it).
        stack.compose("build", "migrate", "web", timeout=1800)
        stack.compose("up", "-d", "--wait", "--wait-timeout", "240", *stack.SERVICES)
        stack.compose("exec", "-T", "web", "python3", "manage.py", "seed", "--orders", "1000")
        results = [(name, profile(name, app, path, c, spy)) for name, app, path, c in TARGETS]
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
    OUT.write_text(markdown(results) + "\n")
    stack.log(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
