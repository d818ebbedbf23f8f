"""Scenario 1: worker classes on the I/O-bound fan-out view (three 300 ms upstream calls),
each web configuration against the seed's figures and a framework-free ceiling, and every async
server on the product page against the default (issue 24). Its run step also measures
scenarios 3 and 4 in the default configuration, in the same rounds."""

import math
from pathlib import Path
from typing import Any

from bench import claims, stack, web
from bench.scenarios import cached_list, detail
from bench.stats import (
    combine,
    errors_text,
    group,
    load_cells,
    load_columns,
    load_text,
    ms,
    num,
    pct,
    ratio,
    rps_cell,
    table,
)

STEP = "web_configs"

UPSTREAM_MS = 300
CALLS = 3
# The seed's claim: three 300 ms calls made concurrently take 300 ms, so 100 clients in a
# closed loop can get at most 100 / 0.3 = 333 answers per second.
FANOUT_LIMIT_RPS = 100 / (UPSTREAM_MS / 1000)

# Load shapes. Sync workers serve one request per worker (0.9 s each, sequential calls), so
# 1,000 requests would take minutes: they get fewer requests at the same concurrency. hey splits
# -n evenly over its -c clients, so every -n is a multiple of its -c.
N_ASYNC = 1000
N_SYNC = 100 if stack.QUICK else 200
C1000_SECONDS = 5 if stack.QUICK else 10
# Warm-up requests at the measured concurrency before each fan-out row.
N_WARM = 300 if stack.QUICK else 500
# The product page in every async configuration (issue 24), beside its fan-out rows.
PRODUCT_PATH = "/api/products/1"
PRODUCT_SECONDS = 5 if stack.QUICK else 10

# The seed's `ab -n 1000 -c 100` figures for the same view, the default configuration's targets
# and the worker count's test (bench/claims.toml).
SEED_SYNC = claims.get("fanout.seed_sync_rps")
SEED_UVICORN = claims.get("fanout.seed_uvicorn_rps")
C100_TARGET = claims.get("fanout.c100_target")
C1000_TARGET = claims.get("fanout.c1000_target")
WORKER_COUNT = claims.get("fanout.worker_count")
REQUEST_THREADS = claims.get("fanout.request_threads")
# Issue 24: the default at or ahead of every alternative server, both loads, same run.
DEFAULT_AHEAD = claims.get("fanout.default_over_alternatives")
# Issue 24: Django's own cost, the default's fan-out as a share of the framework-free app's.
OF_FRAMEWORK_FREE = claims.get("fanout.of_framework_free")


def measure(results: dict[str, Any]) -> None:
    """Scenarios 1, 3 and 4: every configuration of web is started once per round and
    measured; the rounds interleave the configurations, so a burst of load from elsewhere on the
    machine hits one round of each, not every run of one configuration, and even rounds run them
    in reverse order (stack.in_round_order). With BENCH_CONFIGS,
    scenario 1's selected rows only."""
    # Filled as the runs finish, so a failure halfway keeps what was measured.
    fanout: list[dict[str, Any]] = []
    switches: list[dict[str, Any]] = []
    results["worker_classes"] = {
        "limit_rps": round(FANOUT_LIMIT_RPS, 1),
        "upstream_ms": UPSTREAM_MS,
        "calls": CALLS,
        "runs": fanout,
        "switch_seconds": switches,
        "default_config": web.default_config()["name"],
        # Issue 24's product page rows, in the same rounds (measure_product_page).
        "product_page": [],
    }
    if stack.CONFIGS:
        # What merge_partial merges row by row into the published scenario 1.
        results["worker_classes"]["configs"] = [config["name"] for config in web.web_configs()]
        results["worker_classes"]["configs_order"] = [c["name"] for c in web.all_web_configs()]
    else:
        detail.begin(results)
        cached_list.begin(results)
    for round_ in range(1, stack.ROUNDS + 1):
        for config in stack.in_round_order(web.web_configs(), round_):
            stack.log(f"round {round_}: web as {config['name']}")
            seconds = web.switch_web(config)
            switches.append({"config": config["name"], "round": round_, "seconds": seconds})
            path = config["path"]
            sync = config.get("sync", False)
            # At the measured concurrency: the worker's upstream pool and Nginx's keep-alive
            # connections grow to their working size before the clock starts, for every row
            # alike (the framework-free one below reuses this worker's warm pool otherwise).
            stack.warm(path, n=20 if sync else N_WARM, c=10 if sync else 100)
            labels = {"config": config["name"], "round": round_}
            # The alternatives' rows with web's CPU: what a lead costs the shared machine.
            load = web.measured_load if config.get("product_page") else stack.load
            fanout.append(load(path, c=100, n=N_SYNC if sync else N_ASYNC, label="c100", **labels))
            # c=1000 for the async and gevent workers only: five sync workers at 0.9 s a
            # request would queue 1,000 clients past Nginx's 35 s read timeout; that is known.
            if not sync and (not stack.QUICK or config.get("product_page")):
                fanout.append(load(path, c=1000, seconds=C1000_SECONDS, label="c1000", **labels))
            if config.get("product_page"):
                measure_product_page(results, labels)
            if not config.get("default"):
                continue
            # The default (production) profile also serves the other scenarios.
            stack.warm("/bench/raw/fanout", n=N_WARM, c=100)
            raw = {"config": f"raw ASGI ({config['name']})", "round": round_}
            fanout.append(stack.load("/bench/raw/fanout", c=100, n=N_ASYNC, label="c100", **raw))
            # The ceiling at c=1000 (the I/O limit, 3,333 req/s, is out of reach of 2 cores).
            fanout.append(
                stack.load("/bench/raw/fanout", c=1000, seconds=C1000_SECONDS, label="c1000", **raw)
            )
            if stack.CONFIGS:
                continue
            detail.measure_round(results, labels)
            cached_list.measure_round(results, labels)


def measure_product_page(results: dict[str, Any], labels: dict[str, Any]) -> None:
    """The product page (scenario 3's view) at both loads, in this configuration and round."""
    stack.warm(PRODUCT_PATH, n=N_WARM, c=100)
    for c in (100, 1000):
        results["worker_classes"]["product_page"].append(
            web.measured_load(PRODUCT_PATH, c=c, seconds=PRODUCT_SECONDS, label=f"c{c}", **labels)
        )


SEQUENTIAL_PATH = "/bench/fanout/sync"


def default_config(data: dict[str, Any]) -> str | None:
    """The production profile's row: recorded by the harness, or (older results) the
    configuration the framework-free ceiling was measured beside."""
    if data.get("default_config"):
        return str(data["default_config"])
    for run in data["runs"]:
        if run["config"].startswith("raw ASGI (") and run["config"].endswith(")"):
            return str(run["config"][len("raw ASGI (") : -1])
    return None


def seed_claim(config: str, label: str, default: str | None) -> str:
    """The seed's figure for this row, where it has one (its `ab -n 1000 -c 100` runs)."""
    if label != "c100":
        return "-"
    if config.startswith("sync x"):
        return f"{SEED_SYNC.value:g} (sync)"
    if config == default:
        return f"{SEED_UVICORN.value:g} (Uvicorn)"
    return "-"


def speedup(data: dict[str, Any]) -> tuple[float, float, float] | None:
    """(default Uvicorn req/s, sync req/s, their ratio) at c=100, as the seed's 318 / 32.76."""
    groups = group(data["runs"], "config", "label")
    default = default_config(data)
    sync = next(
        (runs for (c, lbl), runs in groups.items() if c.startswith("sync x") and lbl == "c100"),
        None,
    )
    fast = groups.get((default, "c100")) if default else None
    if not sync or not fast:
        return None
    sync_rps, fast_rps = combine(sync)["rps"], combine(fast)["rps"]
    if not sync_rps or not fast_rps:
        return None
    return fast_rps, sync_rps, fast_rps / sync_rps


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data = results.get("worker_classes")
    if not data or not data["runs"]:
        return ["## 1. Worker classes on the I/O-bound view", "", "Not measured this run.", ""]
    limit = data["limit_rps"]
    default = default_config(data)
    sequential_limit = limit / data["calls"]
    lines = [
        "## 1. Worker classes on the I/O-bound view",
        "",
        f"**Claim:** {claims.wording('fanout')}. **Limit:** {limit:.0f} req/s at c=100 "
        f"({data['calls']} calls of {data['upstream_ms']} ms; sync views make them one after "
        "another, async views all at once); **target** for the default configuration: the "
        f"seed's {C100_TARGET.value:.1%} of it with zero errors. At c=1000 the same "
        f"arithmetic gives {10 * limit:,.0f} req/s, far above what two cores can serve, so each "
        "row is also held against the framework-free app measured in the same run at the "
        "same load (the ceiling; **target** at c=1000: "
        f"{C1000_TARGET.compare} {C1000_TARGET.value:.0%} of it).",
        "",
        "Views: `/bench/fanout/sync` (urllib, sequential) for sync, gthread and gevent (the "
        "seed's legacy row: Gunicorn's gevent worker on the WSGI app, its patched sockets "
        "turning each blocking call into a yield, but still one call after another); "
        "`/bench/fanout/async` (asyncio.gather through the worker's shared aiohttp session, "
        "`shop.upstream.fetch_json`) for the async workers; `/bench/raw/fanout` is the same "
        "three calls in a framework-free ASGI function in the same Uvicorn workers (the ceiling). "
        "The sync and gthread rows get fewer requests than the seed's n=1000 (same c=100): "
        "at their 5-13 req/s, 1,000 requests would take minutes per configuration. "
        f"A sequential view's own limit at c=100 is {sequential_limit:.0f} req/s "
        f"(100 / {data['calls'] * data['upstream_ms'] / 1000:.1f} s), which only gevent's "
        "greenlets could reach; the achieved / limit column holds every row against the "
        "seed's 333 req/s. The seed req/s column is the seed's own `ab -n 1000 -c 100` figure "
        "for that row.",
        "",
    ]
    rows = []
    groups = group(data["runs"], "config", "label")
    for (config, label), runs in groups.items():
        combined = combine(runs)
        load_limit = limit if label == "c100" else 10 * limit
        achieved = ratio(combined["rps"], load_limit)
        raw = groups.get((f"raw ASGI ({default})", label))
        of_ceiling = ratio(combined["rps"], combine(raw)["rps"]) if raw else None
        rows.append(
            [
                config,
                load_text(runs[0]),
                seed_claim(config, label, default),
                rps_cell(combined),
                ms(combined["mean_s"]),
                ms(combined["p50_s"]),
                ms(combined["p95_s"]),
                ms(combined["p99_s"]),
                errors_text(combined),
                f"**{pct(achieved)}**",
                "-" if config.startswith("raw ASGI") else pct(of_ceiling),
            ]
        )
        if label == "c100":
            headline.append(
                [
                    f"1. fan-out, {config}, c=100",
                    f"{limit:.0f} req/s"
                    + (f" (target {C100_TARGET.value:.1%})" if config == default else ""),
                    f"{num(combined['rps'], 0)} req/s, errors {errors_text(combined)}",
                    pct(achieved),
                ]
            )
            if config == default and of_ceiling is not None and raw:
                met = OF_FRAMEWORK_FREE.met(of_ceiling) and not combined["failed"]
                headline.append(
                    [
                        f"1. fan-out, {config}, c=100, against the framework-free app",
                        f"{OF_FRAMEWORK_FREE.sign} {OF_FRAMEWORK_FREE.value:.0%} of "
                        f"{num(combine(raw)['rps'], 0)} req/s, 0 errors",
                        f"{num(combined['rps'], 0)} req/s, errors {errors_text(combined)}",
                        f"{of_ceiling:.1%}" + ("" if met else ", **behind**"),
                    ]
                )
        elif config == default and of_ceiling is not None:
            headline.append(
                [
                    f"1. fan-out, {config}, c=1000, against the framework-free ceiling",
                    f"ceiling {num(combine(raw)['rps'], 0)} req/s (target {C1000_TARGET.value:.0%})"
                    if raw
                    else "-",
                    f"{num(combined['rps'], 0)} req/s, errors {errors_text(combined)}",
                    pct(of_ceiling),
                ]
            )
    lines += table(
        [
            "configuration",
            "load",
            "seed req/s",
            "ok req/s (each round)",
            "mean ms",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
            "achieved / limit",
            "/ framework-free",
        ],
        rows,
    )
    switches = data.get("switch_seconds") or []
    if switches:
        lines += [
            "Web recreated per configuration (`up -d --no-deps --wait web`), the "
            "configurations in the order of the table in odd rounds and reversed in even ones: "
            + ", ".join(f"{s['config']} {s['seconds']} s" for s in switches)
            + ".",
            "",
        ]
    lines += [
        "**Where this stack is behind the claim, and why.** The sync and gthread rows cannot "
        "approach 333 req/s by design: a sync worker holds one request for the whole "
        "0.9 s of sequential calls, so five workers top out at 5 / 0.9 = 5.6 req/s, and "
        "gthread at 3 x 4 threads / 0.9 = 13 req/s; every other client waits in the queue, "
        "which is the latency above. The async workers overlap all 100 requests' calls, so "
        "their gap to 333 req/s is CPU and scheduling: two cores run Nginx, the workers, both "
        "upstream stand-ins (900 calls/s) and hey itself, and each request costs Django's "
        "middleware, routing and three HTTP round trips. " + behind_text(groups, default, limit),
        "",
    ]
    lines += alternatives_comparison(data, headline)
    lines += seed_comparison(data, headline)
    lines += handler_comparison(data)
    lines += worker_count_choice(data, headline)
    lines += request_threads_choice(data, headline)
    failing = [
        config
        for (config, label), runs in group(data["runs"], "config", "label").items()
        if label == "c1000" and combine(runs)["failed"]
    ]
    if failing:
        lines += [
            "At c=1000, errors in " + ", ".join(failing) + ". A 502 from the framework-free "
            "app is its own answer when an upstream call missed its 10 s timeout: nothing bounds "
            "its requests in flight, so ~500 per worker queue ~1,500 calls for the worker's "
            "UPSTREAM_POOL_SIZE upstream connections, and the wait counts against the timeout. "
            "In Django's rows a request that runs sync code waits for one of the worker's "
            "request threads (GUNICORN_REQUEST_THREADS, runtime/asgi.py), where no timeout runs; "
            "the fan-out runs none. A 504 is Nginx giving up on web "
            "(5 s to connect, 35 s to answer) and a client timeout is hey's own 30 s. The other "
            "configurations kept every request at c=1000.",
            "",
        ]
    return lines


def product_page_order(data: dict[str, Any]) -> list[str]:
    """The configurations measured on the product page: the default first, then the others in
    the order they ran."""
    default = default_config(data)
    names = list(dict.fromkeys(run["config"] for run in data.get("product_page") or []))
    return sorted(names, key=lambda name: name != default)


def web_cpu(runs: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Web's CPU ms per answered request and cores used, the mean over the rounds (None for
    runs measured without them)."""
    per_ok = [r["web_cpu_ms_per_ok"] for r in runs if r.get("web_cpu_ms_per_ok")]
    cores = [r["web_cores"] for r in runs if r.get("web_cores")]
    return (
        sum(per_ok) / len(per_ok) if per_ok else None,
        sum(cores) / len(cores) if cores else None,
    )


def lead_text(name: str, share: float, runs: dict[str, list[dict[str, Any]]]) -> str:
    """What a lead over the default cost: the leader's and the default's web CPU per request
    and cores, and which of the two the lead came from."""
    (lead_cpu, lead_cores), (cpu, cores) = web_cpu(runs[name]), web_cpu(runs["default"])
    if lead_cpu is None or lead_cores is None or cpu is None or cores is None:
        return ""
    source = (
        "it spent no less CPU per request: its lead is CPU it took from what shares the cores"
        if lead_cpu >= cpu
        else "it spent less CPU per request"
    )
    return (
        f" ({name} {share:.2f}x: web CPU {lead_cpu:.2f} ms a request on {lead_cores:.2f} "
        f"cores, the default {cpu:.2f} ms on {cores:.2f}; {source})"
    )


def alternatives_comparison(data: dict[str, Any], headline: list[list[str]]) -> list[str]:
    """Issue 24: every async server against the default on the fan-out and the product page,
    both loads, same run; a headline verdict per endpoint and load, and for a lead over the
    default, what it cost in web's CPU."""
    page = data.get("product_page") or []
    default = default_config(data)
    servers = [name for name in product_page_order(data) if not web.is_request_threads_config(name)]
    if not page or default not in servers:
        return []
    endpoints = (
        ("fan-out", group(data["runs"], "config", "label")),
        ("product page", group(page, "config", "label")),
    )
    rows = []
    leads: list[str] = []
    for endpoint, groups in endpoints:
        for label in ("c100", "c1000"):
            base = groups.get((default, label))
            if not base:
                continue
            base_rps = combine(base)["rps"]
            strongest: tuple[str, float] | None = None
            for config in servers:
                runs = groups.get((config, label))
                if not runs:
                    continue
                combined = combine(runs)
                share = ratio(combined["rps"], base_rps)
                stronger = strongest is None or (share or 0) > strongest[1]
                if config != default and share is not None and stronger:
                    strongest = (config, share)
                cpu, cores = web_cpu(runs)
                rows.append(
                    [
                        endpoint,
                        f"**{config}** (default)" if config == default else config,
                        *load_cells(runs[0], combined),
                        num(cpu, 2),
                        num(cores, 2),
                        "1.00x" if config == default else (f"{share:.2f}x" if share else "-"),
                    ]
                )
            if strongest is None:
                continue
            name, share = strongest
            ahead = DEFAULT_AHEAD.met(1 / share)
            lead = lead_text(name, share, {name: groups[(name, label)], "default": base})
            if not ahead and lead:
                leads.append(f"{endpoint} c={label[1:]}{lead}")
            headline.append(
                [
                    f"1. {endpoint}, default ({default}) / every alternative, c={label[1:]}",
                    f"{DEFAULT_AHEAD.sign} {DEFAULT_AHEAD.value:g} (at or ahead)",
                    ("yes" if ahead else "**no**")
                    + f": strongest alternative {name} at {share:.2f}x the default",
                    f"{1 / share:.2f}",
                ]
            )
    lines = [
        "**The default against every alternative server** (issue 24): the same rounds as the "
        "rows above, the default's row first, each alternative's throughput as a share of the "
        "default's. The product page is scenario 3's `GET /api/products/1` (a replica read, a "
        f"Redis stock read, two 50 ms upstream calls), {page[0]['seconds']} s per row. Goal: "
        f"the default at or ahead of every alternative at both loads ({DEFAULT_AHEAD.source}); "
        "the headline names the strongest alternative of each load. Web CPU: the web "
        "container's CPU time (its cgroup: every process) per answered request, and in cores "
        "(CPU seconds per second of the run) out of the two that hey, Nginx and the upstream "
        "stand-ins share with it.",
        "",
        *table(
            [
                "endpoint",
                "configuration",
                *load_columns(each="round"),
                "web CPU ms / request",
                "web cores",
                "/ default",
            ],
            rows,
        ),
    ]
    if leads:
        lines += [
            "**Where an alternative leads by more than the noise**, what the lead cost: "
            + "; ".join(leads)
            + ".",
            "",
        ]
    return lines


def default_over(data: dict[str, Any], other: str) -> list[tuple[str, float]] | None:
    """The default's throughput as a share of `other`'s on the four loads of the alternatives'
    table (fan-out and product page, c=100 and c=1000); None unless both ran every load."""
    default = default_config(data)
    shares: list[tuple[str, float]] = []
    for endpoint, runs in (("fan-out", data["runs"]), ("product page", data.get("product_page"))):
        groups = group(runs or [], "config", "label")
        for label in ("c100", "c1000"):
            base, more = groups.get((default, label)), groups.get((other, label))
            share = ratio(combine(base)["rps"], combine(more)["rps"]) if base and more else None
            if share is None:
                return None
            shares.append((f"{endpoint} c={label[1:]}", share))
    return shares


def choice_verdict(
    headline: list[list[str]], what: str, shares: list[tuple[str, float]], claim: claims.Claim
) -> tuple[str, float]:
    """A headline row: the geometric mean of the default's shares, held to `claim`. The loads'
    figures and the mean."""
    mean = math.prod(share for _, share in shares) ** (1 / len(shares))
    each = ", ".join(f"{load} {share:.2f}" for load, share in shares)
    headline.append(
        [
            f"1. {what}, geometric mean of four loads",
            f"{claim.sign} {claim.value:g}",
            ("yes" if claim.met(mean) else "**no**") + f": {each}",
            f"{mean:.2f}",
        ]
    )
    return each, mean


def worker_count_choice(data: dict[str, Any], headline: list[list[str]]) -> list[str]:
    """Issue 24: the default's worker count against twice as many, on the four loads of the
    alternatives' table; a headline verdict on the geometric mean of the default's share."""
    default = default_config(data)
    if not default or not default.startswith("uvicorn x"):
        return []
    double = f"uvicorn x{2 * int(default[len('uvicorn x') :])}"
    shares = default_over(data, double)
    if shares is None:  # every load, or no verdict
        return []
    what = f"worker count: {default} (default) / {double}"
    each, mean = choice_verdict(headline, what, shares, WORKER_COUNT)
    return [
        f"**The worker count** (issue 24): the default's {default} against {double}, the "
        "default's throughput as a share of the other's on each load of the table above: "
        f"{each}; geometric mean {mean:.2f}. The count that serves more across the four loads "
        "is the default. More workers hold more requests and upstream calls in flight at "
        "c=1000 (each worker bounds its own: GUNICORN_REQUEST_THREADS requests running sync "
        "code, and UPSTREAM_POOL_SIZE connections), and they are more processes on the two "
        "cores that hey, Nginx and the stand-ins share; each also costs its own memory, which "
        "the Kubernetes web pod's limit is sized for (k8s/base/web.yaml). `GUNICORN_WORKERS` "
        "changes it.",
        "",
    ]


def request_threads_choice(data: dict[str, Any], headline: list[list[str]]) -> list[str]:
    """Issue 24: the default's request threads per worker against half and twice as many, on
    the same four loads; a headline verdict for each."""
    default = default_config(data)
    if not default:
        return []
    lines: list[str] = []
    for threads in web.REQUEST_THREADS_TRIED:
        other = web.request_threads_config(threads)
        shares = default_over(data, other)
        if shares is None:
            continue
        what = f"request threads: {default} ({web.REQUEST_THREADS}, default) / {threads}"
        each, mean = choice_verdict(headline, what, shares, REQUEST_THREADS)
        lines.append(f"against {threads} threads {each} (geometric mean {mean:.2f})")
    if not lines:
        return []
    return [
        f"**The request threads per worker** (issue 24): the default's {web.REQUEST_THREADS} "
        "(GUNICORN_REQUEST_THREADS, runtime/asgi.py) against half and twice as many, the "
        f"default's throughput as a share of the other's ({REQUEST_THREADS.source}): "
        + "; ".join(lines)
        + ". Only a request that runs sync code takes a thread (the product page's replica "
        "read); the fan-out never does, so its rows show the noise between identical "
        "configurations. Fewer threads queue the product page's requests at c=1000; more put "
        "more threads on the GIL and more PgBouncer clients in line for its pool.",
        "",
    ]


def behind_text(
    groups: dict[tuple[Any, ...], list[dict[str, Any]]], default: str | None, limit: float
) -> str:
    """The default row against the seed's target and the framework-free ceiling, in words."""
    own = groups.get((default, "c100"))
    raw = groups.get((f"raw ASGI ({default})", "c100"))
    if not own or not raw:
        return ""
    target = C100_TARGET.value
    mine, ceiling = combine(own)["rps"] or 0, combine(raw)["rps"] or 0
    verdict = "meets" if C100_TARGET.met(mine / limit) else "is **behind**"
    text = (
        f"At c=100 the default ({default}) reached {mine / limit:.1%} of the limit and "
        f"{verdict} the seed's {target:.1%}; the framework-free app in the same workers, "
        f"same run, reached {ceiling / limit:.1%}. "
    )
    if not C100_TARGET.met(ceiling / limit):
        text += (
            "The ceiling itself is below the target: what separates it from 333 req/s is the "
            "machine (Nginx, hey and the stand-ins share the two cores with the workers; the "
            "seed's figure had no Nginx in front), not Django. "
        )
    text += (
        f"Django's own share is the gap between the two: {1 - mine / ceiling:.1%} of the "
        "ceiling's throughput (see what moved it below, and docs/benchmarks/profile.md)."
    )
    return text


def against_seed(measured: float, seed: claims.Claim) -> str:
    """A row's req/s as a share of the seed's figure, and why it is behind where it is."""
    text = f"{pct(measured / seed.value)} of the seed's {seed.value:g}"
    return text if seed.met(measured) else f"{text} (**behind**: {seed.behind})"


def seed_comparison(data: dict[str, Any], headline: list[list[str]]) -> list[str]:
    """The seed's headline (Uvicorn 318 vs sync 32.76 req/s: 9.7x) against this run's, and the
    gevent row against its own sequential limit."""
    claimed = SEED_UVICORN.value / SEED_SYNC.value
    lines = []
    measured = speedup(data)
    if measured:
        fast, sync, times = measured
        headline.append(
            [
                "1. Uvicorn / sync workers, c=100",
                f"{claimed:.1f}x ({SEED_UVICORN.value:g} / {SEED_SYNC.value:g} req/s)",
                f"{times:.1f}x ({num(fast, 0)} / {num(sync, 1)} req/s)",
                "-",
            ]
        )
        lines += [
            f"**Against the seed's headline** (Uvicorn {SEED_UVICORN.value:g} vs sync "
            f"{SEED_SYNC.value:g} req/s, {claimed:.1f}x): this run's default Uvicorn row "
            f"{num(fast, 0)} vs sync {num(sync, 1)} req/s, **{times:.1f}x**. "
            f"Uvicorn reached {against_seed(fast, SEED_UVICORN)}; "
            f"sync {against_seed(sync, SEED_SYNC)}. "
            + (
                "The speed-up is larger than the seed's because the sync row is smaller, not "
                "because Uvicorn is faster than claimed."
                if times > claimed and not SEED_UVICORN.met(fast)
                else ""
            ),
            "",
        ]
    groups = group(data["runs"], "config", "label")
    for (config, label), runs in groups.items():
        if not config.startswith("gevent") or label != "c100" or runs[0]["path"] != SEQUENTIAL_PATH:
            continue
        combined = combine(runs)
        own = data["limit_rps"] / data["calls"]
        text = (
            f"**gevent** ({config}, the seed's legacy row): {num(combined['rps'], 0)} req/s at "
            f"c=100, {pct(ratio(combined['rps'], own))} of the {own:.0f} req/s a sequential "
            f"view allows and {pct(ratio(combined['rps'], data['limit_rps']))} of the 333 "
            "req/s the concurrent view allows. It overlaps requests like the async workers, "
            "but each request still waits for three calls in turn, so its ceiling is a third "
            "of theirs; it also opens a new connection per call (urllib has no pool)."
        )
        if (config, "c1000") in groups:
            wide = combine(groups[(config, "c1000")])
            text += (
                f" At c=1000 (its own limit 1000 / 0.9 s = {10 * own:,.0f} req/s): "
                f"{num(wide['rps'], 0)} req/s, errors {errors_text(wide)}."
            )
        lines += [text, ""]
    return lines


# What moved the fan-out's number: scenario 1 runs each as its own configuration, and each is
# compared with the default (no suffix) of the same worker count.
VARIANTS = (
    (" (stock Django handler)", "Django's stock ASGIHandler"),
    (" (pooled, thread hops)", "pooled executors (runtime/asgi.py), Django's middleware hopping"),
    ("", "pooled + Django's middleware inline (runtime/inline_middleware.py): **the default**"),
    (" (max_requests 1000)", "the default, recycled every 1,000 requests (the sync habit)"),
    (" (head and body in two writes)", "the default with Uvicorn's own HTTP protocol"),
)


def handler_comparison(data: dict[str, Any]) -> list[str]:
    """The default against the configurations that differ from it in one thing: same workers,
    same run, rounds interleaved."""
    groups = group(data["runs"], "config", "label")
    suffixes = [suffix for suffix, _ in VARIANTS if suffix]
    bases = sorted(
        {
            c[: -len(s)]
            for c, _ in groups
            for s in suffixes
            if c.endswith(s) and (c[: -len(s)], "c100") in groups
        }
    )
    lines: list[str] = []
    for base in bases:
        labels = [label for label in ("c100", "c1000") if (base, label) in groups]
        rows = []
        for suffix, what in VARIANTS:
            if not any((base + suffix, label) in groups for label in labels):
                continue
            row = [what]
            for label in labels:
                runs = groups.get((base + suffix, label))
                rps = combine(runs)["rps"] if runs else None
                default = combine(groups[(base, label)])["rps"]
                row += [num(rps, 0), f"**{rps / default:.2f}x**" if rps and default else "-"]
            rows.append(row)
        if len(rows) < 2:
            continue
        header = ["configuration"]
        for label in labels:
            header += [f"{label} req/s", f"{label} / default"]
        lines += [
            f"**What moved the number** ({base}, same workers, rounds interleaved). A request "
            "that runs sync code borrows a reused single-thread executor at its first call "
            "there, instead of Django's new executor and joining thread per request; Django's "
            "own middleware runs its sync methods on the event loop instead of one thread hop "
            "each (13 per request with this settings.MIDDLEWARE, each waiting for the GIL while "
            "the loop is busy); the "
            "request_started and request_finished receivers, thread-local, run on the request's "
            "thread only if the request runs anything there (an async view that never does "
            "never waits for a thread); and a "
            "Uvicorn worker is recycled after 50,000 requests, not 1,000: at this rate 1,000 "
            "meant a recycle every few seconds, each a ~4 s drain with the listener closed (the "
            "c=100 run of 1,000 requests, 500 more to warm up, gives each of two workers ~750: "
            "below the 1,000 +/- 100 mark, so only the 10 s c=1000 run shows it); and a "
            "response's head leaves with its body in one write (runtime/http_protocol.py), where "
            "Uvicorn's own protocol makes a system call for each. Where the time "
            "goes: `make profile` (docs/benchmarks/profile.md).",
            "",
            *table(header, rows),
        ]
    return lines


def plot(results: dict[str, Any], out: Path = stack.OUT) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: plots skipped (apt-get install python3-matplotlib)")
        return []
    data = results.get("worker_classes")
    if not data or not data["runs"]:
        return []
    written = []
    for label in ("c100", "c1000"):
        groups = [
            (config, combine(runs))
            for (config, lbl), runs in group(data["runs"], "config", "label").items()
            if lbl == label
        ]
        if not groups:
            continue
        names = [name for name, _ in groups]
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
        rps = [c["rps"] or 0 for _, c in groups]
        left.barh(names, rps, color="#4c72b0")
        left.axvline(data["limit_rps"], color="#c44e52", linestyle="--", label="limit 333 req/s")
        left.set_xlabel("ok requests/s (median of rounds)")
        left.set_title(f"Fan-out throughput, {label}")
        left.invert_yaxis()
        left.legend(loc="lower right")
        latency_bars(right, groups, title=f"Latency percentiles, {label}", log=True)
        written.append(save(plt, fig, out / f"fanout-{label}.png"))
    written += plot_product_page(plt, data, out)
    return written


def plot_product_page(plt: Any, data: dict[str, Any], out: Path) -> list[str]:
    """The product page per configuration, the default on top, each bar labelled with its
    share of the default's throughput."""
    default = default_config(data)
    servers = product_page_order(data)
    groups = group(data.get("product_page") or [], "config", "label")
    written = []
    for label in ("c100", "c1000"):
        rows = [
            (name, combine(groups[(name, label)])) for name in servers if (name, label) in groups
        ]
        if not rows or rows[0][0] != default:
            continue
        base = rows[0][1]["rps"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4))
        names = [name for name, _ in rows]
        rps = [c["rps"] or 0 for _, c in rows]
        bars = left.barh(names, rps, color=["#55a868"] + ["#4c72b0"] * (len(rows) - 1))
        left.bar_label(bars, [f"{ratio(v, base) or 0:.2f}x" for v in rps], padding=3)
        left.set_xlabel("ok requests/s (median of rounds); label: / default")
        left.set_title(f"Product page throughput, {label}")
        left.invert_yaxis()
        latency_bars(right, rows, title=f"Product page latency, {label}")
        written.append(save(plt, fig, out / f"product-page-{label}.png"))
    return written


def latency_bars(
    axes: Any, rows: list[tuple[str, dict[str, Any]]], *, title: str, log: bool = False
) -> None:
    """A plot's latency panel: p50, p95 and p99 side by side for each (name, combined) row,
    the first row on top."""
    height = 0.27
    for i, (p, color) in enumerate(
        (("p50_s", "#55a868"), ("p95_s", "#dd8452"), ("p99_s", "#c44e52"))
    ):
        values = [(c[p] or 0) * 1000 for _, c in rows]
        positions = [y + (i - 1) * height for y in range(len(rows))]
        axes.barh(positions, values, height=height, color=color, label=p[:-2])
    axes.set_yticks(range(len(rows)), [name for name, _ in rows])
    if log:
        axes.set_xscale("log")
    axes.set_xlabel("latency, ms (log scale)" if log else "latency, ms")
    axes.set_title(title)
    axes.invert_yaxis()
    axes.legend(loc="lower right")


def save(plt: Any, fig: Any, path: Path) -> str:
    """Writes the figure as the PNG at `path`, closes it and returns the file's name."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
