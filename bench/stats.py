"""Figures of bench/run.py's results as bench/report.py's scenarios print them: the median
of repeated runs, ratios, and Markdown tables. Standard library only."""

import statistics
from collections.abc import Iterable
from typing import Any

from bench.hey import error_kind


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None, limit: float | None) -> float | None:
    if value is None or not limit:
        return None
    return value / limit


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def group(
    runs: Iterable[dict[str, Any]], *keys: str
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Runs grouped by the given labels, in first-seen order (the order they ran)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run.get(key) for key in keys), []).append(run)
    return groups


def rps_cell(combined: dict[str, Any]) -> str:
    """A table cell: the combined ok req/s in bold, then each run's in brackets."""
    each = ", ".join(num(v, 0) for v in combined["rps_each"])
    return f"**{num(combined['rps'], 0)}** ({each})"


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one configuration: median throughput and percentiles, summed counts."""

    def median(values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    percentiles = {
        p: median(run["percentiles_s"].get(p, run["percentiles_s"].get(str(p))) for run in runs)
        for p in (50, 95, 99)
    }
    errors: dict[str, int] = {}
    for run in runs:
        for code, count in run["status"].items():
            if not 200 <= int(code) < 300:
                errors[f"HTTP {code}"] = errors.get(f"HTTP {code}", 0) + count
        for message, count in run["errors"].items():
            kind = error_kind(message)
            errors[kind] = errors.get(kind, 0) + count
    return {
        "rps": median(run["ok_rps"] for run in runs),
        "rps_each": [run["ok_rps"] for run in runs],
        "mean_s": median(run["average_s"] for run in runs),
        "p50_s": percentiles[50],
        "p95_s": percentiles[95],
        "p99_s": percentiles[99],
        "requests": sum(run["requests"] for run in runs),
        "failed": sum(run["failed"] for run in runs),
        "errors": errors,
    }


def errors_text(combined: dict[str, Any]) -> str:
    if not combined["failed"]:
        return "0"
    kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(combined["errors"].items()))
    return f"{combined['failed']} ({kinds})"


def load_text(run: dict[str, Any]) -> str:
    return f"c={run['c']}, " + (f"n={run['n']}" if run.get("n") else f"{run['seconds']} s")


# combine()'s latency percentiles, as most load tables show them.
PERCENTILES = ("p50_s", "p95_s", "p99_s")


def load_columns(*, each: str = "run", percentiles: tuple[str, ...] = PERCENTILES) -> list[str]:
    """The headers of load_cells' cells; `each` says what the bracketed req/s are one of."""
    return ["load", f"ok req/s (each {each})", *(f"{p[:-2]} ms" for p in percentiles), "errors"]


def load_cells(
    run: dict[str, Any], combined: dict[str, Any], *, percentiles: tuple[str, ...] = PERCENTILES
) -> list[str]:
    """A load row's measured cells: the load (of `run`, one of the combined runs), the ok
    req/s, the latency percentiles in ms and the errors."""
    return [
        load_text(run),
        rps_cell(combined),
        *(ms(combined[p]) for p in percentiles),
        errors_text(combined),
    ]


def label_rows(
    runs: list[dict[str, Any]], *, percentiles: tuple[str, ...] = PERCENTILES
) -> tuple[list[list[str]], dict[str, float | None]]:
    """A row per label, in the order they ran: the label, then its load_cells; and each
    label's combined ok req/s."""
    rows = []
    figures: dict[str, float | None] = {}
    for (label,), each in group(runs, "label").items():
        combined = combine(each)
        figures[label] = combined["rps"]
        rows.append([label, *load_cells(each[0], combined, percentiles=percentiles)])
    return rows, figures


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def opening(
    results: dict[str, Any],
    key: str,
    title: str,
    *,
    items: str | None = "runs",
    added_later: bool = False,
) -> tuple[Any, list[str]]:
    """A section's data and its first lines. The data is None when this run did not measure it
    (no entry, or no `items` in it), and the lines are then the whole section. A section
    `added_later` than some published results has no lines at all without its entry, so their
    report stays as it was."""
    data = results.get(key)
    if added_later and not data:
        return None, []
    lines = [f"## {title}", ""]
    if not data or (items is not None and not data[items]):
        return None, [*lines, "Not measured this run.", ""]
    return data, lines
