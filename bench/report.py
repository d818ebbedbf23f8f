#!/usr/bin/env python3
"""Turns docs/benchmarks/results.json (bench/run.py) into docs/BENCHMARKS.md and PNG plots: the
frame (run, machine, headline table) here, each scenario's section in bench/scenarios/.

The Markdown needs only the standard library. The plots need matplotlib: `make bench` runs
this with Debian's /usr/bin/python3 and its python3-matplotlib package (the project's .venv
does not have matplotlib, and pyproject.toml is not changed for a bench-only tool); without
matplotlib the Markdown is still written and says the plots were skipped.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scenarios
from bench.scenarios import fanout
from bench.stats import table

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks"
MARKDOWN = ROOT / "docs" / "BENCHMARKS.md"


# `make test`'s time, measured by hand (pytest --durations on the changed stack modules, before
# and after, one machine, 2 cores shared with other stacks): not part of a bench run.
CI_TIME = [
    "## CI time: where `make test` got faster",
    "",
    "The CI run took 2,297 s (2,222 s in pytest) against a 40-minute budget. Measured with "
    "`pytest --durations` on the changed modules, before and after each change, on a 2-core "
    "machine other stacks were loading too (seconds vary by a few between runs):",
    "",
    "| change | test(s) | before | after | saved |",
    "| --- | --- | --- | --- | --- |",
    "| every image's health check runs each second during its start period (`--start-interval=1s`; "
    "web's first check came 10 s after start) | the three production deploys (test_production.py) "
    "| 136.5 s | 92.3 s | 44 s |",
    "| ... and the web recreations of the fault tests, once per class for the two stuck sync views "
    "instead of once per case | TestSyncViewStuck (test_faults.py) | 96.8 s | 48.9 s | 48 s |",
    "| `POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT` (production 60 s), 30 s on the test stack; "
    "the end of the session polled instead of a fixed 70 s sleep | "
    "test_a_session_left_idle_in_a_transaction_is_ended_by_the_server | 70.7 s | 31.1 s | 40 s |",
    "| `NGINX_UPSTREAM_GONE_SECONDS` (production 30 s), 3 s for the removed-replica test; the "
    "reload polled | test_a_removed_replica_leaves_nginx_after_the_grace (with teardown) "
    "| 44.9 s | 20.0 s | 25 s |",
    "| Nginx put back once after the rate-limit module instead of after each of its 5 tests "
    "| test_rate_limits.py | 5 recreations | 1 | ~10 s |",
    "| `PGBOUNCER_LOG_DISCONNECTIONS` on for the test stack instead of sed and SIGHUP in the "
    "running container | test_a_stopping_web_worker_closes_its_database_connections | - | - "
    "| within noise |",
    "",
    "Every other `docker compose up --wait` of the suite (the session stack, web recreated by the "
    "fault, monitoring, tracing and TLS modules, the backup and lifecycle restarts) gains from "
    "the start interval too; not measured one by one.",
    "",
]


def render(results: dict[str, Any], plots: list[str]) -> str:
    meta = results["meta"]
    host = meta["host"]
    headline: list[list[str]] = []
    body: list[str] = []
    for scenario in scenarios.REPORTED:
        body += scenario.section(results, headline)
    body += [
        "## Found along the way",
        "",
        "- Fixed, found by earlier runs of this bench: `GUNICORN_PRELOAD=false` crashed every "
        "worker at boot (post_fork touched django.db before Django was loaded), and "
        "`GUNICORN_WORKER_CLASS=asgi` was handed the WSGI app (tests/app/test_gunicorn_conf.py).",
        "- Fixed, found with `make profile` and scenario 1's comparison rows: Django's own "
        "middleware made 13 thread hops per ASGI request (runtime/inline_middleware.py); Uvicorn "
        "workers were recycled every 1,000 requests, i.e. every few seconds at this load, each "
        "recycle a ~4 s drain (max_requests is now per worker model); django-redis built a new "
        "redis-py client for every request (core/cache.py). And in the harness itself: the "
        "Django rows opened their upstream and keep-alive connections on the clock while the "
        "framework-free row measured after them reused the warm ones (every row is now warmed "
        "at its measured concurrency).",
        "- Gunicorn's gevent worker under this stack's preload_app (the default) patches the "
        "standard library only after the master has loaded Django: every worker logs gevent's "
        "MonkeyPatchWarning (ssl already imported; redis.asyncio's direct imports not "
        "patched). The measured view uses neither TLS nor Redis, so its row stands; a real "
        "gevent deployment would patch in gunicorn.conf.py before Django loads, or turn "
        "preload off.",
        "",
    ]
    for scenario in scenarios.AFTER_FOUND:
        body += scenario.section(results, headline)
    body += CI_TIME

    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/run.py, bench/report.py) from "
        "[benchmarks/results.json](benchmarks/results.json). Do not edit by hand.",
        "",
        f"- Run: {meta['started']} to {meta.get('finished', '?')}, "
        f"{'quick (`BENCH_QUICK=1`)' if meta['quick'] else 'full'}, "
        f"{meta['rounds']} round(s) per configuration, "
        f"wall time {meta.get('wall_seconds', '?')} s.",
        f"- Machine: {host['cores']} cores ({host['cpu']}), {host['memory_gib']} GiB, "
        f"kernel {host['kernel']}, Docker {host['docker']}. Load average "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average_start'])} at "
        f"the start, {', '.join(f'{x:.1f}' for x in meta.get('load_average_end', []))} at the end. "
        "Numbers are noisy; compare rows of one run, not runs of different days.",
        f"- Load generator: {host['load_generator']} (keep-alive on, 30 s client timeout). "
        "Everything (hey, Nginx, web, the upstream stand-ins, Postgres, PgBouncer) shares the "
        "same cores.",
        "- Stack: compose project `djstack-bench`, "
        "images tagged `:bench`, "
        "bench/compose.bench.yml over docker-compose.yml (routes the bench endpoints, takes "
        "the web command from the harness). Production settings otherwise: Uvicorn workers "
        "recycle after 50,000 requests (gunicorn.conf.py), so no run here recycles them except "
        "the row that says max_requests 1000.",
        "",
    ]
    for partial in meta.get("partial_runs", []):
        lines[-1:-1] = [
            f"- Re-run on their own since (`BENCH_ONLY={','.join(partial['only'])}`"
            + (
                f", `BENCH_CONFIGS={','.join(partial['configs'])}`"
                if partial.get("configs")
                else ""
            )
            + ", "
            f"{'quick' if partial['quick'] else 'full'}): {partial['started']} to "
            f"{partial.get('finished', '?')}, load average "
            f"{', '.join(f'{x:.1f}' for x in partial['load_average_start'])} at the start; "
            + (
                "scenario 1's rows of those configurations, and the other scenarios listed, "
                "show that run's figures (the other rows of scenario 1 are the full run's)."
                if partial.get("configs")
                else "those sections show that run's figures."
            )
        ]
    if results.get("failures"):
        lines += ["**Failed steps this run:**", ""]
        lines += [f"- {name}: `{error[:300]}`" for name, error in results["failures"].items()]
        lines.append("")
    lines += ["## Headline: measured against each claim", ""]
    lines += table(["figure", "claim / limit", "measured", "achieved / limit"], headline)
    for plot in plots:
        lines += [f"![{plot}](benchmarks/{plot})", ""]
    lines += body
    lines += [
        "## Not measured",
        "",
        "- Sync/gthread at c=1000: they would queue clients past Nginx's 35 s read timeout.",
    ]
    if meta["quick"]:
        lines.append(
            "- Quick mode: one round; Uvicorn at 2 x cores, `uvicorn --workers` without "
            "Gunicorn, Granian, Gunicorn's ASGI worker and the handler and max_requests "
            "comparisons skipped unless BENCH_CONFIGS names them; three clients of 300 "
            "requests in scenario 2; one on/off pair on the product page in scenario 9; "
            "shorter runs; c=1000 fan-out and the product page per server only for the "
            "default configuration and the alternatives named; product detail at c=1000 "
            "only; one turn per client in scenario 2 and one A/B alternation in scenarios 4 "
            "and 14; preload at 2 workers only; 20 requests per view in scenario 11, 5 s "
            "runs in scenario 12 and 8 s runs in scenario 15."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    # As bench/run.py: BENCH_RESULTS reads a one-off run's file; BENCH_MARKDOWN writes the
    # Markdown elsewhere, its plots in benchmarks/ beside it (the links are relative).
    source = Path(os.environ.get("BENCH_RESULTS", "") or OUT / "results.json")
    markdown = Path(os.environ.get("BENCH_MARKDOWN", "") or MARKDOWN)
    plots_dir = markdown.parent / "benchmarks"
    plots_dir.mkdir(parents=True, exist_ok=True)
    results = json.loads(source.read_text())
    plots = fanout.plot(results, plots_dir)
    markdown.write_text(render(results, plots))
    print(f"wrote {markdown} and {len(plots)} plot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
