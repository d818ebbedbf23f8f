"""Scenario 11: the fan-out's three upstream calls one after another vs all at once, one request
at a time (c=1): the single-request latency the seeds quote, in the default web configuration."""

from typing import Any

from bench import claims, stack, web
from bench.stats import combine, errors_text, group, ms, num, opening, ratio, table

STEP = "sequential"

# The stand-ins' latency per call, chosen so that three calls in turn take the seeds' 1,050 ms.
UPSTREAM_MS = 350
CALLS = 3
N_REQUESTS = 20 if stack.QUICK else 40
# The same three calls through the same shared aiohttp session (bench_endpoints.views): only
# the order differs.
VIEWS = (
    ("sequential", f"/bench/fanout/sequential?latency_ms={UPSTREAM_MS}"),
    ("concurrent", f"/bench/fanout/async?latency_ms={UPSTREAM_MS}"),
)

RATIO = claims.get("sequential.concurrent_over_sequential")
SEED_MS = {
    "sequential": claims.get("sequential.seed_sequential_ms"),
    "concurrent": claims.get("sequential.seed_concurrent_ms"),
}


def measure(results: dict[str, Any]) -> None:
    """Both views at c=1 in the default configuration, alternated once per round."""
    runs: list[dict[str, Any]] = []
    default = web.default_config()
    results["sequential"] = {
        "upstream_ms": UPSTREAM_MS,
        "calls": CALLS,
        "rounds": stack.ROUNDS,
        "quick": stack.QUICK,
        "config": default["name"],
        "runs": runs,
    }
    web.switch_web(default)
    for _, path in VIEWS:
        # The worker's upstream pool and Nginx's keep-alive connection open off the clock.
        stack.warm(path, n=4, c=2)
    for round_ in range(1, stack.ROUNDS + 1):
        for label, path in VIEWS:
            stack.log(f"round {round_}: {label} upstream calls, c=1")
            runs.append(stack.load(path, c=1, n=N_REQUESTS, label=label, round=round_))


def medians(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each view's runs combined (median over the rounds), by label."""
    return {label: combine(runs) for (label,), runs in group(data["runs"], "label").items()}


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(
        results, "sequential", "11. Sequential vs concurrent upstream calls, one request at a time"
    )
    if data is None:
        return lines
    calls, upstream = data["calls"], data["upstream_ms"]
    n = data["runs"][0]["n"]
    lines += [
        f"**Claim:** {claims.wording('sequential')}. The fan-out view's {calls} upstream calls "
        f"({upstream} ms each at the stand-ins, `?latency_ms={upstream}`) through the worker's "
        "shared aiohttp session (`shop.upstream.fetch_json`), awaited one after another "
        "(`/bench/fanout/sequential`) or all at once with asyncio.gather "
        "(`/bench/fanout/async`, the product page's way: `shop.selectors.product_detail_get`), "
        f"in the default configuration ({data['config']}), one request at a time: c=1, n={n} "
        f"per view and round, the views alternated in each of {data['rounds']} round(s). "
        "The floor is the stand-ins' latency alone: "
        f"{calls * upstream:,} ms in turn, {upstream} ms at once."
        + (" Quick run (`BENCH_QUICK=1`): one round, fewer requests." if data["quick"] else ""),
        "",
    ]
    combined = medians(data)
    by_label = group(data["runs"], "label")
    rows = []
    for label, _ in VIEWS:
        if label not in combined:
            continue
        c = combined[label]
        each = ", ".join(ms(combine([run])["p50_s"]) for run in by_label[(label,)])
        rows.append(
            [
                label,
                f"{SEED_MS[label].value:,.0f}",
                f"**{ms(c['p50_s'])}** ({each})",
                ms(c["mean_s"]),
                ms(c["p95_s"]),
                errors_text(c),
            ]
        )
    lines += table(
        ["upstream calls", "seeds' ms", "p50 ms (each round)", "mean ms", "p95 ms", "errors"], rows
    )
    if "sequential" not in combined or "concurrent" not in combined:
        return lines
    sequential, concurrent = combined["sequential"], combined["concurrent"]
    measured = ratio(concurrent["p50_s"], sequential["p50_s"])
    p95 = ratio(concurrent["p95_s"], sequential["p95_s"])
    if measured is None:
        return lines
    verdict = (
        "**meets** the seeds' claim" if RATIO.met(measured) else "is **behind** the seeds' claim"
    )
    seed_seq, seed_conc = SEED_MS["sequential"].value, SEED_MS["concurrent"].value
    lines += [
        f"**Concurrent / sequential:** median {num(measured, 2)} (p95 {num(p95, 2)}) against the "
        f"seeds' {seed_conc:,.0f} / {seed_seq:,.0f} ms = {RATIO.value:.2f} ({RATIO.sign} "
        f"{RATIO.value:.2f}): this run {verdict}. Beyond the calls themselves a request costs "
        f"{ms(sequential['p50_s'] - calls * upstream / 1000)} ms sequential and "
        f"{ms(concurrent['p50_s'] - upstream / 1000)} ms concurrent here (Nginx, Django, the "
        f"three round trips); the seeds' {seed_conc:,.0f} ms leaves {seed_conc - upstream:,.0f} ms "
        "for it.",
        "",
    ]
    headline.append(
        [
            "11. fan-out at c=1, concurrent / sequential calls (p50)",
            f"{RATIO.sign} {RATIO.value:.2f} ({seed_conc:,.0f} / {seed_seq:,.0f} ms)",
            f"{num(measured, 2)} ({ms(concurrent['p50_s'])} / {ms(sequential['p50_s'])} ms)",
            "-",
        ]
    )
    return lines
