"""Scenario 9: metrics and tracing on vs off in the default web configuration."""

import statistics
from typing import Any

from bench import stack, web
from bench.stats import combine, errors_text, group, load_text, ms, num, opening, ratio, table

STEP = "observability"


OBSERVABILITY_SECONDS = 4 if stack.QUICK else 10
# Off/on alternations: the ratio of one pair is at the mercy of whatever else the machine runs.
OBSERVABILITY_ROUNDS = 1 if stack.QUICK else 2
# Both off: no Prometheus recording, tracing not even imported. Both on: every request recorded
# in the metrics and traced (server span, SQL, Redis and upstream spans) and exported over
# OTLP/HTTP to otlp-sink, which answers without decoding (bench/compose.bench.yml).
OBSERVABILITY = {
    "off": {"METRICS_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ""},
    "on": {"METRICS_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otlp-sink:4318"},
}
# The product page (database, Redis, two upstream calls: the most spans per request) and the
# cached product list (the least work per request, so the highest relative cost).
OBSERVABILITY_PATHS = (("/api/products/1", 100), ("/api/products", 50))[: 1 if stack.QUICK else 2]


def web_cpu_seconds() -> float:
    """CPU time the web container has used (every process, exited workers included), from its
    cgroup: v2 cpu.stat usage_usec, or v1 cpuacct.usage (ns)."""
    out = stack.compose(
        "exec", "-T", "web", "sh", "-c",
        "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage",
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("usage_usec"):
            return int(line.split()[1]) / 1e6
    return int(out.split()[0]) / 1e9


def measure(results: dict[str, Any]) -> None:
    """Metrics and tracing on vs off in the default web configuration, alternated in one run:
    the row is the ratio of their throughputs, next to web's CPU time per request (which other
    loads on a shared machine disturb far less than they disturb throughput)."""
    runs: list[dict[str, Any]] = []
    results["observability"] = {"seconds": OBSERVABILITY_SECONDS, "runs": runs}
    default = web.default_config()
    stack.compose("up", "-d", "--no-deps", "--wait", "--wait-timeout", "60", "otlp-sink")
    try:
        for round_ in range(1, OBSERVABILITY_ROUNDS + 1):
            for state, env in OBSERVABILITY.items():
                stack.log(f"round {round_}: metrics and tracing {state}")
                stack.compose(
                    "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "web",
                    extra={**web.web_env(default), **env},
                )  # fmt: skip
                stack.wait_http("/healthz")
                for path, c in OBSERVABILITY_PATHS:
                    stack.warm(path)
                    cpu_before = web_cpu_seconds()
                    run = stack.load(
                        path, c=c, seconds=OBSERVABILITY_SECONDS, label=state, round=round_,
                        config=default["name"],
                    )  # fmt: skip
                    cpu = web_cpu_seconds() - cpu_before
                    run["web_cpu_ms_per_ok"] = (
                        round(1000 * cpu / run["ok"], 3) if run["ok"] else None
                    )
                    runs.append(run)
    finally:
        web.switch_web(default)
        stack.compose("rm", "--stop", "--force", "otlp-sink", check=False)


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "observability", "9. Metrics and tracing: on vs off")
    if data is None:
        return lines
    lines += [
        "The default web configuration recreated with both off (`METRICS_ENABLED=false`, "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` unset: nothing of tracing imported) and both on "
        "(Prometheus recording; every request traced: server, SQL, Redis and upstream spans, "
        "exported over OTLP/HTTP to a sink that drops them unread), alternated, "
        f"{data['seconds']} s per run. On / off: the ratio of the median throughputs over the "
        "rounds, and of web's CPU time per answered request (its container's cgroup: every "
        "worker, the export threads included), which the rest of a shared machine disturbs "
        "far less than throughput.",
        "",
    ]
    rows = []
    for (path,), runs in group(data["runs"], "path").items():
        by_state = {state: r for (state,), r in group(runs, "label").items()}
        if "off" not in by_state or "on" not in by_state:
            continue
        off, on = combine(by_state["off"]), combine(by_state["on"])
        cpu = {
            state: statistics.median(
                [r["web_cpu_ms_per_ok"] for r in by_state[state] if r.get("web_cpu_ms_per_ok")]
                or [0]
            )
            or None
            for state in ("off", "on")
        }
        share = ratio(on["rps"], off["rps"])
        cpu_share = ratio(cpu["on"], cpu["off"])
        rows.append(
            [
                f"`GET {path}`, {load_text(runs[0])}",
                f"{num(off['rps'], 0)} / {num(on['rps'], 0)}",
                f"**{num(share, 2)}**",
                f"{num(cpu['off'], 2)} / {num(cpu['on'], 2)}",
                f"**{num(cpu_share, 2)}**",
                f"{ms(off['p99_s'])} / {ms(on['p99_s'])}",
                f"{errors_text(off)} / {errors_text(on)}",
            ]
        )
        headline.append(
            [
                f"9. metrics + tracing on / off, `GET {path}`",
                "-",
                f"{num(on['rps'], 0)} / {num(off['rps'], 0)} req/s; "
                f"CPU {num(cpu['on'], 2)} / {num(cpu['off'], 2)} ms per request",
                f"{num(share, 2)} (CPU {num(cpu_share, 2)})",
            ]
        )
    header = [
        "load",
        "req/s off / on",
        "throughput on / off",
        "web CPU ms/req off / on",
        "CPU on / off",
        "p99 ms off / on",
        "errors off / on",
    ]
    lines += table(header, rows)
    return lines
