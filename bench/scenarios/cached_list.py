"""Scenario 4: the cached product list against a framework-free hello world, measured in
scenario 1's rounds."""

from typing import Any

from bench import stack
from bench.stats import label_rows, load_columns, opening, pct, ratio, table

CEILING_SECONDS = 4 if stack.QUICK else 10


def begin(results: dict[str, Any]) -> None:
    results["product_list_vs_hello"] = {"runs": []}


def measure_round(results: dict[str, Any], labels: dict[str, Any]) -> None:
    """One round, in scenario 1's default configuration: A/B alternations of equal length."""
    # Scenario 4: the cached product list vs a framework-free hello world.
    stack.warm("/api/products")
    stack.warm("/bench/raw/hello")
    for name, ceiling_path in stack.ALTERNATIONS * (
        ("GET /api/products (cached)", "/api/products"),
        ("raw ASGI hello world", "/bench/raw/hello"),
    ):
        results["product_list_vs_hello"]["runs"].append(
            stack.load(ceiling_path, c=50, seconds=CEILING_SECONDS, label=name, **labels)
        )


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(
        results, "product_list_vs_hello", "4. Cached product list vs a bare ASGI hello world"
    )
    if data is None:
        return lines
    lines += [
        "Same web configuration (default profile), c=50, equal durations, alternated. The "
        "hello world is a "
        "framework-free ASGI function served by the same Gunicorn/Uvicorn workers (the ceiling).",
        "",
    ]
    percentiles = ("p50_s", "p99_s")
    rows, figures = label_rows(data["runs"], percentiles=percentiles)
    lines += table(["endpoint", *load_columns(percentiles=percentiles)], rows)
    listing = figures.get("GET /api/products (cached)")
    hello = figures.get("raw ASGI hello world")
    measured = ratio(listing, hello)
    if measured is not None:
        lines += [
            f"Cached list / hello world: **{pct(measured)}** of the ceiling.",
            "",
            "**Why:** a hit is answered in front of Django (runtime/edge.py): the query read "
            "plainly, one Redis MGET on the worker's one pipelined connection (core/resp.py; "
            "redis-py's asyncio client took about five times its CPU per MGET, measured), the "
            "stored bytes with the headers Django gave the route, the request's metrics, request "
            "ID and duration. What remains against the hello world: Uvicorn's protocol for a "
            "larger body, the Redis round trip, and the metrics' multiprocess files; and Nginx's "
            "gzip of each answer (2.5 KB of JSON; the hello world is below gzip_min_length), which "
            "hey's client asks for and unpacks. Nginx's JSON access log applies to both. Where "
            "the worker's time goes: docs/benchmarks/profile.md.",
            "",
        ]
        headline.append(
            ["4. cached list / raw hello world", "ceiling", pct(measured), pct(measured)]
        )
    return lines
