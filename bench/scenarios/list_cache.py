"""Scenario 14: the cached product list against the same page uncached, against the seeds'
"2-5x" for adding a cache."""

from typing import Any

from bench import claims, stack, web
from bench.stats import label_rows, load_columns, num, opening, pct, ratio, table

STEP = "list_cache"
SECONDS = 4 if stack.QUICK else 10
CLIENTS = 50
CACHED = "/api/products"
# bench/django: shop.selectors.product_list shaped by shop.schemas.ProductPage on every request,
# what the cached view does on a miss.
UNCACHED = "/bench/products/uncached"
GAIN = claims.get("list_cache.cached_over_uncached")


def measure(results: dict[str, Any]) -> None:
    """Cached and uncached alternated, equal durations, same load, default configuration."""
    runs: list[dict[str, Any]] = []
    results["list_cache"] = {"seconds": SECONDS, "runs": runs}
    web.switch_web(web.default_config())
    stack.warm(CACHED, n=500, c=CLIENTS)
    stack.warm(UNCACHED, n=500, c=CLIENTS)
    for round_ in range(1, stack.ROUNDS + 1):
        for label, path in stack.ALTERNATIONS * (("cached", CACHED), ("uncached", UNCACHED)):
            runs.append(stack.load(path, c=CLIENTS, seconds=SECONDS, label=label, round=round_))


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(
        results, "list_cache", "14. Cached vs uncached product list", added_later=True
    )
    if data is None:
        return lines
    lines += [
        f"**Claim:** {claims.wording('list_cache')}.",
        "",
        f"`{CACHED}` (page 1 of 20, cached in Redis: shop/cache.py) and `{UNCACHED}` (bench "
        "only: the same selector, `shop.selectors.product_list` on the replica, and the same "
        "`shop.schemas.ProductPage` shaping on every request, no Redis), alternated, "
        f"{data['seconds']} s each, c={CLIENTS}, default web configuration. The uncached "
        "view is a plain Django view: it skips django-ninja's query validation, which the "
        "cached row pays, so the ratio is, if anything, in the uncached row's favour.",
        "",
    ]
    rows, figures = label_rows(data["runs"])
    lines += table(["list", *load_columns()], rows)
    gain = ratio(figures.get("cached"), figures.get("uncached"))
    if gain is not None:
        verdict = "meets" if GAIN.met(gain) else "is **behind**"
        lines += [
            f"Cached / uncached: **{gain:.2f}x**, which {verdict} the seeds' 2-5x "
            f"({GAIN.sign} {GAIN.value:g}x, its low end).",
            "",
        ]
        headline.append(
            [
                f"14. cached / uncached product list, c={CLIENTS}",
                f"2-5x (the seeds; {GAIN.sign} {GAIN.value:g}x)",
                f"{gain:.2f}x ({num(figures.get('cached'), 0)} / "
                f"{num(figures.get('uncached'), 0)} req/s)",
                pct(gain / GAIN.value),
            ]
        )
    return lines
