#!/usr/bin/env python3
"""`make profile`: where a web worker's CPU goes on the fan-out view (scenario 1's load, c=100),
sampled with py-spy from the host, for the default ASGI handler and the ones it is measured
against (bench/django/bench_endpoints/asgi_variants.py); the product page in scenario 9's
observability states (off, metrics only, metrics + tracing at the default sampler, every request
traced), and the cached list in those up to a request the sampler drops. Writes
docs/benchmarks/profile.md: per target, the share of samples by package (where the time is
spent, leaf frame) and the functions with the most samples; per observability state, the CPU per
request it adds to off, by package and by function. Then scenario 15's orders (c=10, a product
each): web's workers and the email worker's pool sampled at once, the CPU an order costs in each,
by package, by the steps of its path and by function.

Uses `make bench`'s project, images and harness (bench/stack.py), and builds its web images.
py-spy runs as root on the host and reads the workers' memory by their host PIDs; it is installed
into build/py-spy from PyPI when missing. Bounded: PROFILE_SECONDS of sampling per target while
hey (or the customers) runs for 5 s longer. PROFILE_ONLY=handlers, PROFILE_ONLY=observability or
PROFILE_ONLY=orders: only that group (the file then holds only its tables); any other name is
refused before anything is built or started.
"""
# ruff: noqa: S603, S607

import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import claims, hey, stack, web
from bench.order_load import OrderLoad
from bench.scenarios import orders
from bench.scenarios.observability import OBSERVABILITY
from bench.stats import num

SECONDS = int(os.environ.get("PROFILE_SECONDS", "20"))
RATE = 200  # samples per second per process: py-spy's overhead stays near 1% of a core
FANOUT = "/bench/fanout/async"
# The same three calls through the same session with no framework around them (scenario 1's
# ceiling): the fan-out's CPU without Django.
RAW_FANOUT = "/bench/raw/fanout"
DEFAULT_FANOUT = "fan-out, default handler"
RAW_FANOUT_NAME = "fan-out, framework-free (raw ASGI)"
# Issue 24: Python CPU per answered fan-out request under the default handler.
CPU_GOAL = claims.get("profile.fanout_cpu_ms")
LIST = "/api/products"
PRODUCT = "/api/products/1"
# (group, name, ASGI app, path, concurrency, web's extra environment): the fan-out (scenario 1)
# under each handler and with no framework, and the cached product list (scenario 4, c=50 as
# there) under the default one; then the product page (scenario 9, c=100) in each
# observability state, off first: the others are compared with it.
Target = tuple[str, str, str, str, int, dict[str, str]]
TARGETS: tuple[Target, ...] = (
    ("handlers", DEFAULT_FANOUT, web.BENCH_ASGI, FANOUT, 100, {}),
    ("handlers", RAW_FANOUT_NAME, web.BENCH_ASGI, RAW_FANOUT, 100, {}),
    ("handlers", "fan-out, pooled with thread hops", web.BENCH_ASGI_HOPS, FANOUT, 100, {}),
    ("handlers", "fan-out, stock Django handler", web.BENCH_ASGI_STOCK, FANOUT, 100, {}),
    ("handlers", "cached list, default handler", web.BENCH_ASGI, LIST, 50, {}),
    *(
        ("observability", f"product page, {state}", web.BENCH_ASGI, PRODUCT, 100, env)
        for state, env in OBSERVABILITY.items()
    ),
    # The cached list: the least work per request, so tracing's fixed cost per request weighs
    # most. The states up to a dropped request: what a request the sampler drops costs.
    *(
        ("observability", f"cached list, {state}", web.BENCH_ASGI, LIST, 50, OBSERVABILITY[state])
        for state in ("off", "metrics", "dropped")
    ),
)
# Placing orders (scenario 15's c=10 "a product each"): web and the email worker sampled at once,
# what an order costs in each.
ORDERS = "orders"
ORDER_SERVICES = ("web", "worker-email")
ORDER_PROGRAMS = {"web": "gunicorn", "worker-email": "celery --app"}
# The names PROFILE_ONLY accepts, in TARGETS' order, then the orders.
GROUPS = (*dict.fromkeys(group for group, *_ in TARGETS), ORDERS)
ONLY = os.environ.get("PROFILE_ONLY", "")
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
    ("opentelemetry/", "OpenTelemetry"),
    ("wrapt/", "OpenTelemetry"),  # the instrumentations' call wrappers
    ("redis/", "Redis client"),
    ("psycopg/", "psycopg"),
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
    ("recording metrics (prometheus_client)", ("prometheus_client/",)),
    ("OpenTelemetry (spans, context, instrumentation)", ("opentelemetry/", "wrapt/")),
)
# Inclusive, on the order path: where an order's CPU goes in web and in the email worker.
ORDER_THROUGH = (
    ("authentication (the bearer token's row)", ("accounts/auth.py",)),
    ("the idempotency key's lookup", ("_order_for_key",)),
    ("placing the order (its transaction)", ("_order_place",)),
    (
        "after the commit (caches, read-your-writes mark, the email's enqueue)",
        ("run_and_clear_commit_hooks",),
    ),
    ("enqueueing the email (Celery's publish)", ("core/queue.py",)),
    ("the email relay task (claim, send, mark sent)", ("outbox_email_deliver",)),
    ("SMTP (smtplib, building the message)", ("smtplib.py", "django/core/mail/")),
    ("compiling SQL (Django's ORM)", ("Compiler.as_sql", "Compiler.pre_sql_setup")),
    ("psycopg (sending, waiting, reading)", ("psycopg/",)),
    ("kombu (Celery's messaging: web's publish, the worker's receive and ack)", ("kombu/",)),
    ("logging", ("logging/",)),
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


def master_pid(service: str = "web", program: str = "gunicorn") -> int:
    """The service's main `program` process (Gunicorn's master in web, Celery's in a worker),
    by host PID (`docker top`): the one whose parent is not another of them."""
    container = stack.compose("ps", "-q", service).stdout.strip()
    out = subprocess.run(
        ["docker", "top", container, "-eo", "pid,ppid,args"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    procs = {}
    for line in out.splitlines()[1:]:
        pid, ppid, args = line.split(None, 2)
        if program in args and "docker-init" not in args:
            procs[int(pid)] = int(ppid)
    found = next((pid for pid, ppid in procs.items() if ppid not in procs), None)
    if found is None:
        raise RuntimeError(f"no {program!r} process runs in {service}")
    return found


def package(frame: str) -> str:
    for needle, name in PACKAGES:
        if needle in frame:
            return name
    return "other (stdlib, C)"


def short(frame: str) -> str:
    """A frame as py-spy names it without --full-filenames, but keeping opentelemetry/ (and
    the app's core/, runtime/...): the path from the package on."""
    function, _, where = frame.partition(" (")
    for prefix in ("site-packages/", "/lib/python3.13/", "/app/", "/opt/bench/"):
        if prefix in where:
            where = where.split(prefix, 1)[1]
            break
    return f"{function} ({where}" if where else function


def summarise(
    collapsed: str, through_frames: tuple[tuple[str, tuple[str, ...]], ...] = THROUGH
) -> dict[str, Any]:
    by_package: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    through: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = short(frames[-1])
        total += int(count)
        by_package[package(frames[-1])] += int(count)
        by_function[leaf] += int(count)
        for name, needles in through_frames:
            if any(needle in stack for needle in needles):
                through[name] += int(count)
    return {"total": total, "packages": by_package, "functions": by_function, "through": through}


def selected_targets(only: str) -> list[Target]:
    """PROFILE_ONLY: the targets of the group it names, every target when it is empty (the
    orders are no target: main() profiles them when they are named, or nothing is)."""
    if only and only not in GROUPS:
        # A typo would otherwise profile nothing and write an empty profile.md over the last one.
        raise SystemExit(
            f"PROFILE_ONLY={only!r} is not a group of targets: one of {', '.join(GROUPS)}, "
            "or empty for all of them"
        )
    return [target for target in TARGETS if only in ("", target[0])]


def target_config(app: str, env: dict[str, str]) -> dict[str, Any]:
    """web for a target: the default configuration serving `app`, with the target's
    environment (an observability state's) over the configuration's own."""
    default = web.default_config()
    return {
        **default,
        "command": f"{web.GUNICORN} {app}",
        "env": {**default.get("env", {}), **env},
    }


def profile(
    name: str, app: str, path: str, c: int, env: dict[str, str], spy: str
) -> dict[str, Any]:
    stack.log(f"profile: {name}")
    web.switch_web(target_config(app, env))
    stack.warm(path)
    # Each target's raw stacks kept (build/profile-<name>.txt), for a look beyond the tables.
    out = stack.ROOT / "build" / f"profile-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.txt"
    out.parent.mkdir(exist_ok=True)
    load = subprocess.Popen(
        ["hey", "-c", str(c), "-z", f"{SECONDS + 5}s", "-t", "30", stack.BASE + path],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    started, cpu_before = time.monotonic(), web.cpu_seconds()
    subprocess.run(record(spy, master_pid(), out), capture_output=True, check=True,
                   timeout=SECONDS + 60)  # fmt: skip
    # py-spy reads the workers from outside their container: none of its CPU is web's.
    web_cpu, window = web.cpu_seconds() - cpu_before, time.monotonic() - started
    stdout, _ = load.communicate(timeout=SECONDS + 120)
    summary = summarise(out.read_text())
    summary["load"] = hey.parse(stdout)
    summary["web_cpu_s"], summary["window_s"] = web_cpu, window
    summary["path"], summary["c"] = path, c
    return summary


def record(spy: str, pid: int, out: Path) -> list[str]:
    """py-spy sampling a process and its children for SECONDS, raw stacks into `out`."""
    return [
        # --gil: only the thread holding the GIL, i.e. Python's CPU time (the idle executor
        # threads would otherwise fill the samples).
        spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--gil",
        "--format", "raw", "--rate", str(RATE), "--duration", str(SECONDS), "--output", str(out),
        # Whole paths: py-spy's short ones drop the opentelemetry/ of its namespace packages
        # (its redis instrumentation reads as redis/__init__.py) and the app's /app/.
        "--full-filenames",
    ]  # fmt: skip


def profile_orders(spy: str) -> dict[str, Any]:
    """Scenario 15's customers (c=10, a product each) placing orders for SECONDS + 10 s, with
    web's workers and the email worker's pool sampled at once for SECONDS, each container's CPU
    over that window and the orders answered inside it. Raises when a sampler or the customers
    failed: a profile of nothing must not read as a cheap order."""
    stack.log("profile: placing orders")
    tokens = orders.customers_ready()
    load = OrderLoad(stack.BASE, tokens=tokens, product_ids=orders.PRODUCT_IDS)
    done: dict[str, Any] = {}
    clients = threading.Thread(target=lambda: done.update(load.run(SECONDS + 10)), daemon=True)
    clients.start()
    time.sleep(2)
    pids = {service: master_pid(service, ORDER_PROGRAMS[service]) for service in ORDER_SERVICES}
    outs = {service: stack.ROOT / "build" / f"profile-orders-{service}.txt" for service in pids}
    outs["web"].parent.mkdir(exist_ok=True)
    for out in outs.values():
        out.unlink(missing_ok=True)  # py-spy writes at its end: never read a last run's
    cpu_before = {service: web.cpu_seconds(service) for service in pids}
    started = time.monotonic()
    spies = {
        service: subprocess.Popen(
            record(spy, pid, outs[service]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for service, pid in pids.items()
    }
    try:
        for service, sampler in spies.items():
            _, err = sampler.communicate(timeout=SECONDS + 60)
            if sampler.returncode or not outs[service].exists():
                raise RuntimeError(f"py-spy on {service}: {err.decode(errors='replace')[-500:]}")
    finally:
        for sampler in spies.values():
            if sampler.poll() is None:
                sampler.kill()
    ended = time.monotonic()
    cpu = {service: web.cpu_seconds(service) - cpu_before[service] for service in pids}
    clients.join(timeout=SECONDS + 120)
    if clients.is_alive() or not done.get("ok"):
        raise RuntimeError(f"the customers' orders did not run: {done or 'still running'}")
    window = ended - started
    placed = sum(1 for at in load.answered_at if started <= at <= ended)
    return {
        "load": {
            "ok_rps": placed / window,
            "p50_s": done["percentiles_s"].get(50),
            "failed": done["failed"],
        },
        "window_s": window,
        "services": {
            service: {**summarise(outs[service].read_text(), ORDER_THROUGH), "cpu_s": cpu[service]}
            for service in pids
        },
    }


def web_cpu_ms_per_request(summary: dict[str, Any]) -> float | None:
    """All of web's CPU time (its cgroup: every process, user and system) over the sampling
    window, per request answered in it; None for a summary without it."""
    answered = summary["load"].get("ok_rps", 0) * summary.get("window_s", 0)
    return 1000 * summary["web_cpu_s"] / answered if answered and "web_cpu_s" in summary else None


def cpu_ms_per_request(summary: dict[str, Any], samples: int | None = None) -> float:
    """Python CPU ms per answered request: of all the samples, or of this many of them."""
    answered = summary["load"].get("ok_rps", 0) * SECONDS
    count = summary["total"] if samples is None else samples
    return 1000 * count / RATE / answered if answered else 0.0


def added(
    off: dict[str, Any], state: dict[str, Any], key: str, top: int
) -> list[tuple[str, float]]:
    """What a state adds to off, in Python CPU us per request, by package or function (key):
    the largest increases first."""
    names = set(off[key]) | set(state[key])
    deltas = {
        name: 1000
        * (
            cpu_ms_per_request(state, state[key].get(name, 0))
            - cpu_ms_per_request(off, off[key].get(name, 0))
        )
        for name in names
    }
    return sorted(deltas.items(), key=lambda item: -item[1])[:top]


def cpu_goal_markdown(results: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 24's goal for the fan-out's Python CPU per request, held to the smaller of its two
    upper bounds (the GIL held, and all of web's CPU), against the same calls with no framework
    in the same workers: how much of it is Django's, and how much the calls'."""
    default, raw = results.get(DEFAULT_FANOUT), results.get(RAW_FANOUT_NAME)
    if default is None or raw is None:
        return []
    held, floor = cpu_ms_per_request(default), cpu_ms_per_request(raw)
    whole = web_cpu_ms_per_request(default)
    bound = held if whole is None else min(held, whole)
    verdict = "met" if CPU_GOAL.met(bound) else "**behind**"
    reach = (
        "so the goal is within what removing Django's share could give"
        if CPU_GOAL.met(floor)
        else "above the goal with no framework at all: Django's work cannot be where it is missed"
    )
    shares = ", ".join(
        f"{package} {cpu_ms_per_request(raw, count):.2f} ms"
        for package, count in raw["packages"].most_common(4)
    )
    measured = f"the GIL held {held:.2f} ms a request"
    if whole is not None:
        measured += f", all of web's CPU {whole:.2f} ms a request"
        if whole < held:
            measured += (
                " (less than the GIL was held: its holder waited for a core while it held it, "
                "and Python's CPU is at most web's)"
            )
    return [
        f"**Python CPU per fan-out request** ({CPU_GOAL.source}): goal {CPU_GOAL.sign} "
        f"{CPU_GOAL.value:g} ms; the default handler at most {bound:.2f} ms, {verdict} "
        f"({measured}). The same three calls through the same aiohttp session with no "
        f"framework, in the same workers (`{RAW_FANOUT}`): the GIL held {floor:.2f} ms, {reach}. "
        f"Django's own work is the difference, {held - floor:.2f} ms of the GIL a request. Where "
        f"the framework-free request's time goes, by package: {shares}.",
        "",
    ]


def observability_markdown(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Scenario 9's states on one path: what each adds to off (the first), per request."""
    off_name, off = results[0]
    lines = [
        f'## Observability: what each state adds to "{off_name}"',
        "",
        f"`GET {off['path']}`, c={off['c']}, the states of docs/BENCHMARKS.md's section 9. Python "
        "CPU per request (us) that each state spends more (+) or less (-) than off, by the leaf "
        "frame's package; sampling noise is a few us per row.",
        "",
    ]
    states = results[1:]
    lines += ["| package | " + " | ".join(n for n, _ in states) + " |"]
    lines.append("|---|" + "---|" * len(states))
    packages = sorted(
        {p for _, r in results for p in r["packages"]},
        key=lambda p: -max(dict(added(off, r, "packages", 100)).get(p, 0.0) for _, r in states),
    )
    for pkg in packages:
        cells = [f"{dict(added(off, r, 'packages', 100)).get(pkg, 0.0):+.0f}" for _, r in states]
        lines.append(f"| {pkg} | " + " | ".join(cells) + " |")
    total = [
        f"**{1000 * (cpu_ms_per_request(r) - cpu_ms_per_request(off)):+.0f}**" for _, r in states
    ]
    lines += ["| **all** | " + " | ".join(total) + " |", ""]
    for name, r in states:
        lines += [
            f"### Functions that gained most: {name} vs off",
            "",
            "| us per request | function |",
            "|---|---|",
        ]
        for function, delta in added(off, r, "functions", 12):
            lines.append(f"| {delta:+.0f} | `{function}` |")
        lines.append("")
    return lines


def orders_markdown(result: dict[str, Any]) -> list[str]:
    """Where an order's CPU goes in web and in the email worker, in ms per order placed."""
    rate, services = result["load"]["ok_rps"], result["services"]
    answered = rate * result["window_s"]

    def per_order(count: float) -> str:
        return f"{1000 * count / RATE / answered:.2f}" if answered else "-"

    names = list(services)
    lines = [
        "## Placing an order: where web's and the email worker's CPU goes",
        "",
        f"`POST /api/orders` through Nginx, {orders.CLIENTS} customers each posting one order "
        "after another (docs/BENCHMARKS.md's section 15, a product each): "
        f"{rate:.0f} orders/s answered while sampling ({result['load'].get('failed', 0)} "
        f"failed over the run), p50 {num(1000 * (result['load']['p50_s'] or 0))} ms. py-spy "
        f"samples web's workers and the email worker's pool at once ({RATE}/s each process, "
        f"{SECONDS} s, the thread holding the GIL). Figures are ms per order answered in the "
        "window: the email worker's are its confirmations' cost only as far as it kept up "
        "(section 15 counts how far it fell behind). The GIL held counts a holder waiting for "
        "a core too: on two busy cores it exceeds the container's CPU, which bounds it; the "
        "rows below are shares of it, in ms.",
        "",
        "| per order | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| **GIL held ms (Python's CPU, and its waits for a core)** | "
        + " | ".join(f"**{per_order(services[n]['total'])}**" for n in names)
        + " |",
        "| container CPU ms (cgroup) | "
        + " | ".join(
            f"{1000 * services[n]['cpu_s'] / answered:.2f}" if answered else "-" for n in names
        )
        + " |",
        "| samples | " + " | ".join(str(services[n]["total"]) for n in names) + " |",
        "",
        "Inclusive, ms of the GIL held per order whose stack passes through each (callees "
        "included; rows overlap).",
        "",
        "| through | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for through, _ in ORDER_THROUGH:
        cells = [per_order(services[n]["through"].get(through, 0)) for n in names]
        lines.append(f"| {through} | " + " | ".join(cells) + " |")
    packages = sorted(
        {p for n in names for p in services[n]["packages"]},
        key=lambda p: -sum(services[n]["packages"].get(p, 0) for n in names),
    )
    lines += ["", "By the leaf frame's package, ms per order.", ""]
    lines += ["| package | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for pkg in packages:
        cells = [per_order(services[n]["packages"].get(pkg, 0)) for n in names]
        lines.append(f"| {pkg} | " + " | ".join(cells) + " |")
    for name in names:
        lines += ["", f"### Top functions: orders, {name}", "", "| ms per order | function |"]
        lines.append("|---|---|")
        for function, count in services[name]["functions"].most_common(12):
            lines.append(f"| {per_order(count)} | `{function}` |")
    return [*lines, ""]


def targets_markdown(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
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
    lines.append("| **Python CPU ms per request** | " + " | ".join(cpu) + " |")
    web_cpu = [num(web_cpu_ms_per_request(r), 2) for _, r in results]
    lines += ["| **web CPU ms per request (cgroup)** | " + " | ".join(web_cpu) + " |", ""]
    lines += [
        "Python CPU per request: samples / rate / (req/s x seconds), i.e. the time the workers "
        "held the GIL per answered request (both workers sampled, so it is per request, not "
        "per worker). A thread holding the GIL is sampled even while it waits for a core "
        "(runnable, preempted), so on shared cores this can exceed the CPU time web spent at "
        "all. Web CPU per request: the web container's CPU time (its cgroup: every process, "
        "user and system) over the sampling window, per request answered in it; the Python "
        "CPU in it is a part of it.",
        "",
        *cpu_goal_markdown(dict(results)),
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
    for path in (PRODUCT, LIST):
        # The path's observability states (named "<page>, <state>"), off first.
        observed = [
            (name, r)
            for name, r in results
            if r["path"] == path and name.rpartition(", ")[2] in OBSERVABILITY
        ]
        if len(observed) > 1:
            lines += observability_markdown(observed)
    return lines


def markdown(
    results: list[tuple[str, dict[str, Any]]], placed: dict[str, Any] | None = None
) -> str:
    """The targets' tables (when any were profiled), then the orders' (when they were)."""
    host = stack.host_info()
    when = (
        f"`make profile` on {host['cores']} cores / {host['memory_gib']} GiB ({host['cpu']}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    targets = (
        f" py-spy samples both Uvicorn workers ({RATE}/s each, {SECONDS} s, the thread holding "
        f"the GIL) while hey keeps 100 clients on `{FANOUT}` (three concurrent 300 ms upstream "
        f"calls), or 50 on `{LIST}` (served from Redis), through Nginx. Shares are of samples "
        "by the leaf frame's package: the time a worker spends in each."
    )
    lines = [
        "# Where the CPU goes under load: web's workers, and an order's path",
        "",
        when
        + (targets if results else "")
        + (
            " The last section samples web and the email worker while customers place orders."
            if placed is not None
            else ""
        ),
        "",
    ]
    if results:
        lines += targets_markdown(results)
    if placed is not None:
        lines += orders_markdown(placed)
    return "\n".join(lines)


def main() -> int:
    targets = selected_targets(ONLY)
    spy = py_spy()
    stack.OUT.mkdir(parents=True, exist_ok=True)
    try:
        # The Django images as make bench builds them (the cache makes this quick after it).
        stack.compose("build", "migrate", "web", timeout=1800)
        # The collector the tracing states export to (it drops what it gets).
        sink = (
            ["otlp-sink"]
            if any(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") for *_, env in targets)
            else []
        )
        stack.compose("up", "-d", "--wait", "--wait-timeout", "240", *stack.SERVICES, *sink)
        stack.compose("exec", "-T", "web", "python3", "manage.py", "seed", "--orders", "1000")
        results = [
            (name, profile(name, app, path, c, env, spy)) for _, name, app, path, c, env in targets
        ]
        try:
            placed = profile_orders(spy) if ONLY in ("", ORDERS) else None
        except Exception:
            # What the targets measured is kept, then the failure is told.
            OUT.write_text(markdown(results) + "\n")
            raise
    finally:
        # The sink is in a compose profile, which `down` leaves running.
        stack.compose("rm", "--stop", "--force", "otlp-sink", check=False)
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
    OUT.write_text(markdown(results, placed) + "\n")
    stack.log(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
