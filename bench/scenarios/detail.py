"""Scenario 3: product detail under high concurrency, measured in scenario 1's rounds."""

from typing import Any

from bench import stack
from bench.stats import combine, errors_text, group, load_text, ms, num, opening, table

DETAIL_SECONDS = 5 if stack.QUICK else 20


def begin(results: dict[str, Any]) -> None:
    results["product_detail"] = {"upstream_ms": 50, "runs": []}


def measure_round(results: dict[str, Any], labels: dict[str, Any]) -> None:
    """One round, in scenario 1's default configuration."""
    # Scenario 3: product detail (database, Redis, two 50 ms upstream calls).
    stack.warm("/api/products/1")
    for c in (1000,) if stack.QUICK else (100, 1000):
        results["product_detail"]["runs"].append(
            stack.load("/api/products/1", c=c, seconds=DETAIL_SECONDS, label=f"c{c}", **labels)
        )


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "product_detail", "3. Product detail under high concurrency")
    if data is None:
        return lines
    lines += [
        "`GET /api/products/1` in the default web configuration for a bounded time: a database "
        "read (replica through PgBouncer), a Redis stock read and the two upstream calls "
        f"({data['upstream_ms']} ms each, concurrently). No limit is claimed; the upstream "
        f"latency alone would allow c / {data['upstream_ms'] / 1000} s.",
        "",
    ]
    rows = []
    for runs in group(data["runs"], "label").values():
        combined = combine(runs)
        rows.append(
            [
                load_text(runs[0]),
                f"**{num(combined['rps'], 0)}**",
                ms(combined["mean_s"]),
                ms(combined["p50_s"]),
                ms(combined["p95_s"]),
                ms(combined["p99_s"]),
                errors_text(combined),
            ]
        )
        headline.append(
            [
                f"3. product detail, {load_text(runs[0])}",
                "-",
                num(combined["rps"], 0) + " req/s",
                "-",
            ]
        )
    lines += table(["load", "ok req/s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "errors"], rows)
    lines += [
        "**Where it stands:** the upstream latency alone would allow c / 0.05 s (2,000 req/s at "
        "c=100), so this figure is CPU: per request an ORM read on the request's thread "
        "(through PgBouncer, on a connection kept for `DB_CONN_MAX_AGE`), a Redis read, two "
        "upstream calls, django-ninja's validation and JSON rendering, on the same two cores as "
        "Nginx, hey, PgBouncer, Postgres and the stand-ins. At c=1000 the throughput holds and "
        "the latency grows: a worker runs at most GUNICORN_REQUEST_THREADS "
        "requests' sync code at once (runtime/asgi.py), the rest wait for a thread at their first "
        "ORM call. An error here would be a 503 `database_unavailable` "
        "(PgBouncer's `query_wait_timeout`, 10 s, on the replica and then the primary), a 504 "
        "from Nginx, or hey's 30 s client timeout.",
        "",
    ]
    return lines
