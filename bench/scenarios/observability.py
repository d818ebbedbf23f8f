"""Scenario 9: metrics alone, and metrics with tracing (sampled by default, and every request),
against both off, in the default web configuration."""

import statistics
from typing import Any

from bench import stack, web
from bench.stats import combine, errors_text, group, load_text, ms, num, opening, ratio, table

STEP = "observability"


OBSERVABILITY_SECONDS = 4 if stack.QUICK else 10
# The states alternated: the ratio of one pair is at the mercy of whatever else the machine runs.
# Five rounds, every other one reversed (stack.in_round_order): the median discards two disturbed
# rounds, and no state always runs first after the machine's last scenario (the first one does
# in three rounds of five, the last in two).
OBSERVABILITY_ROUNDS = 1 if stack.QUICK else 5
SINK = "http://otlp-sink:4318"
# The settings' defaults (tests/bench checks): the sampler's ratio, and TRACES_MAX_PER_SECOND,
# the new traces a second each worker keeps at most.
RATIO = 0.1
TRACES_CAP = 5
# off: no Prometheus recording, tracing not even imported. metrics: recording only. tracing:
# metrics and tracing at the default sampler (settings: a tenth of new traces kept, at most
# TRACES_CAP a second in each worker). all: every
# request traced (server span, SQL, Redis and upstream spans). Spans are exported over OTLP/HTTP
# to otlp-sink, which answers without decoding (bench/compose.bench.yml).
OBSERVABILITY = {
    "off": {"METRICS_ENABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ""},
    "metrics": {"METRICS_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ""},
    "tracing": {
        "METRICS_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(RATIO),
        "TRACES_MAX_PER_SECOND": str(TRACES_CAP),
    },
    # Tracing on, no new trace kept: what it costs the requests the sampler drops, which at the
    # default are nine in ten.
    "dropped": {
        "METRICS_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    },
    "all": {
        "METRICS_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    },
}
# Each state's throughput against off: the goals of issue 24.
GOALS = {"metrics": 0.97, "tracing": 0.9, "dropped": None, "all": None}
STATE_TEXT = {
    "metrics": "metrics only",
    # With the cap the run measured under (state_text).
    "tracing": "metrics + tracing (default sampler: a tenth, at most {cap}/s a worker)",
    "dropped": "metrics + tracing, no request kept",
    "all": "metrics + tracing of every request",
    "on": "metrics + tracing of every request",  # results from before the sampler's default
}


def state_text(state: str, data: dict[str, Any]) -> str:
    """How a state reads in the tables: the tracing state with the cap of the run it names."""
    return STATE_TEXT.get(state, state).format(cap=data.get("traces_cap", "-"))


# The product page (database, Redis, two upstream calls: the most spans per request) and the
# cached product list (the least work per request, so the highest relative cost).
OBSERVABILITY_PATHS = (("/api/products/1", 100), ("/api/products", 50))[: 1 if stack.QUICK else 2]


def measure(results: dict[str, Any]) -> None:
    """Each state against off in the default web configuration, alternated in one run: the row
    is the ratio of their throughputs, next to web's CPU time per request (which other
    loads on a shared machine disturb far less than they disturb throughput)."""
    runs: list[dict[str, Any]] = []
    default = web.default_config()
    results["observability"] = {
        "seconds": OBSERVABILITY_SECONDS,
        "rounds": OBSERVABILITY_ROUNDS,
        "traces_cap": TRACES_CAP,
        "workers": default["workers"],
        "runs": runs,
    }
    stack.compose("up", "-d", "--no-deps", "--wait", "--wait-timeout", "60", "otlp-sink")
    try:
        for round_ in range(1, OBSERVABILITY_ROUNDS + 1):
            for state, env in stack.in_round_order(list(OBSERVABILITY.items()), round_):
                stack.log(f"round {round_}: metrics and tracing {state}")
                stack.compose(
                    "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "web",
                    extra={**web.web_env(default), **env},
                )  # fmt: skip
                stack.wait_http("/healthz")
                for path, c in OBSERVABILITY_PATHS:
                    stack.warm(path)
                    run = web.measured_load(
                        path, c=c, seconds=OBSERVABILITY_SECONDS, label=state, round=round_,
                        config=default["name"],
                    )  # fmt: skip
                    runs.append(run)
    finally:
        web.switch_web(default)
        stack.compose("rm", "--stop", "--force", "otlp-sink", check=False)


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "observability", "9. Metrics and tracing: on vs off")
    if data is None:
        return lines
    lines += [
        "The default web configuration recreated in each state, alternated, "
        f"{data['seconds']} s per run, in {data.get('rounds', 2)} rounds, every other one in "
        "reverse order: off (`METRICS_ENABLED=false`, "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` unset: nothing of tracing imported); metrics only; "
        "metrics and tracing at the default sampler (`parentbased_traceidratio`, 0.1, at most "
        f"`TRACES_MAX_PER_SECOND`={data.get('traces_cap', '-')} new traces a second in each "
        "worker); tracing "
        "on with no new trace kept (ARG 0: what tracing costs a request it drops); and "
        "every request traced (`parentbased_always_on`: server, SQL, Redis and upstream spans, "
        "exported over OTLP/HTTP to a sink that drops them unread). State / off: the ratio of "
        "the median throughputs over the rounds, and of web's CPU time per answered request "
        "(its container's cgroup: every worker, the export threads included), which the rest "
        "of a shared machine disturbs far less than throughput.",
        "",
    ]
    rows = []
    budgets = []
    for (path,), runs in group(data["runs"], "path").items():
        by_state = {state: r for (state,), r in group(runs, "label").items()}
        if "off" not in by_state:
            continue
        off = combine(by_state["off"])
        cpu = {
            state: statistics.median(
                [r["web_cpu_ms_per_ok"] for r in state_runs if r.get("web_cpu_ms_per_ok")] or [0]
            )
            or None
            for state, state_runs in by_state.items()
        }
        tracing_runs = by_state.get("tracing")
        budgets += tracing_budget(
            path,
            cpu,
            kept=kept_share(data, combine(tracing_runs)["rps"]) if tracing_runs else None,
        )
        for state, state_runs in by_state.items():
            if state == "off":
                continue
            on = combine(state_runs)
            share = ratio(on["rps"], off["rps"])
            cpu_share = ratio(cpu[state], cpu["off"])
            goal = GOALS.get(state)
            rows.append(
                [
                    f"`GET {path}`, {load_text(runs[0])}",
                    state_text(state, data),
                    f"{num(off['rps'], 0)} / {num(on['rps'], 0)}",
                    f"**{num(share, 3)}**" + standing(share, goal),
                    "-" if goal is None else f"≥ {goal}",
                    f"{num(cpu['off'], 2)} / {num(cpu[state], 2)}",
                    f"**{num(cpu_share, 2)}**",
                    f"{ms(off['p99_s'])} / {ms(on['p99_s'])}",
                    f"{errors_text(off)} / {errors_text(on)}",
                ]
            )
            headline.append(
                [
                    f"9. {state_text(state, data)} / off, `GET {path}`",
                    "-" if goal is None else f"≥ {goal}",
                    f"{num(on['rps'], 0)} / {num(off['rps'], 0)} req/s; "
                    f"CPU {num(cpu[state], 2)} / {num(cpu['off'], 2)} ms per request",
                    f"{num(share, 3)} (CPU {num(cpu_share, 2)})" + standing(share, goal),
                ]
            )
    header = [
        "load",
        "state",
        "req/s off / state",
        "throughput state / off",
        "goal",
        "web CPU ms/req off / state",
        "CPU state / off",
        "p99 ms off / state",
        "errors off / state",
    ]
    lines += table(header, rows)
    if budgets:
        lines += ["", *budgets]
    return lines


def standing(share: float | None, goal: float | None) -> str:
    """Beside a ratio held to a goal: behind it by any margin, however it rounds."""
    if goal is None or share is None or share >= goal:
        return ""
    return ", **behind**"


def kept_share(data: dict[str, Any], rps: float | None) -> tuple[float, str]:
    """The share of requests the default sampler kept at this throughput, and how it reads: a
    tenth, or fewer where the cap binds (cap x workers a second), on results that record it."""
    ratio = (RATIO, "a tenth of the requests")
    cap, workers = data.get("traces_cap"), data.get("workers")
    if not (cap and workers and rps):
        return ratio
    capped = cap * workers / rps
    text = f"{capped:.1%} of the requests (the cap binds at the tracing state's throughput)"
    return min(ratio, (capped, text))


def tracing_budget(
    path: str, cpu: dict[str, float | None], *, kept: tuple[float, str] | None
) -> list[str]:
    """What binds the default sampler's goal on one path, from its CPU rows: where throughput
    follows CPU per request, 0.9 of off's throughput allows off / 0.9 per request. The states
    split what tracing at the default costs: what each request pays whether kept or not
    (dropped: metrics and tracing's own), and what a kept one pays more (all - dropped), times
    the share of requests the sampler keeps (`kept`: the share, and how it reads)."""
    off, metrics, dropped, kept_all = (cpu.get(s) for s in ("off", "metrics", "dropped", "all"))
    goal = GOALS["tracing"]
    if not (off and metrics and dropped and kept_all and goal and kept):
        return []
    kept_share, share = kept
    allowed = off / goal
    more = kept_all - dropped
    floor = dropped + kept_share * more
    room = (allowed - dropped) / kept_share  # what a kept request may cost more than a dropped
    verdict = (
        f"a kept request may cost at most {room:.2f} ms more than a dropped one, against "
        f"{more:.2f} measured"
        if room > 0
        else f"a dropped request alone already costs more than that ({dropped:.2f} ms), "
        "whatever the kept ones cost"
    )
    return [
        f"**What binds tracing's goal on `GET {path}`** (web CPU per request, ms): 0.9 of off's "
        f"throughput allows {allowed:.2f} (off {off:.2f} / 0.9). Metrics alone take "
        f"{metrics:.2f}; a request the sampler drops {dropped:.2f} ({dropped - metrics:+.2f} for "
        f"tracing); a kept one {more:.2f} more (every request traced: {kept_all:.2f}). The "
        f"default keeps {share}, which adds {kept_share * more:.3f}: "
        f"{floor:.2f}, {off / floor:.2f} of off's: {verdict}. Where each state's CPU goes, by "
        "package and by function: `make profile`'s comparison of this path's states with off "
        "([profile.md](benchmarks/profile.md)).",
        "",
    ]
