#!/usr/bin/env python3
"""`make bench`: brings the stack up under its own project
(djstack-bench, 127.0.0.1:28080, images tagged :bench),
runs the scenarios (bench/scenarios/, one module each) with hey (a separate Go program)
against Nginx's published port, and writes docs/benchmarks/results.json; bench/report.py turns
that into docs/BENCHMARKS.md and the plots. BENCH_QUICK=1: fewer configurations, shorter runs.

Standard library only: it runs with any python3, no virtualenv needed. Every load run is
bounded by a request count or a duration, and the project is torn down (`down -v`) at the end,
also after a failure.
"""

import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scenarios, stack
from bench.scenarios import images
from bench.stack import compose, log


def cold_start() -> dict[str, Any]:
    """`docker compose up --wait` from nothing (volumes included) with the images built."""
    compose("down", "-v", "--remove-orphans", check=False)
    started = time.monotonic()
    proc = compose("up", "-d", "--wait", "--wait-timeout", "240", *stack.SERVICES, check=False)
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"compose up failed:\n{proc.stderr[-3000:]}")
    return {"seconds": seconds, "services": stack.SERVICES}


def step(results: dict[str, Any], name: str, fn: Callable[[dict[str, Any]], None]) -> None:
    """One scenario; a failure is recorded and the next scenario still runs."""
    if stack.ONLY and name not in stack.ONLY:
        return
    started = time.monotonic()
    try:
        fn(results)
    except Exception as exc:  # reported in results.json and the Markdown
        log(f"{name} failed: {exc}")
        results.setdefault("failures", {})[name] = f"{type(exc).__name__}: {exc}"[:2000]
    results.setdefault("step_seconds", {})[name] = round(time.monotonic() - started, 1)


def merge_partial(new: dict[str, Any]) -> dict[str, Any]:
    """A BENCH_ONLY run: its scenarios replace theirs in the last full results.json, and the
    run is listed under meta.partial_runs (the table headers keep the full run's meta)."""
    path = stack.RESULTS
    if not path.exists():
        return new
    merged: dict[str, Any] = json.loads(path.read_text())
    for key, value in new.items():
        if key == "worker_classes" and "configs" in value and key in merged:
            merged[key] = merge_configs(merged[key], value)
        elif key not in ("meta", "failures", "step_seconds"):
            merged[key] = value
    failures = {k: v for k, v in merged.get("failures", {}).items() if k not in stack.ONLY}
    failures.update(new.get("failures", {}))
    merged.pop("failures", None)
    if failures:
        merged["failures"] = failures
    merged.setdefault("step_seconds", {}).update(new.get("step_seconds", {}))
    # One entry per scenario set (and configuration set): the run whose figures the file holds.
    entry = {
        "only": sorted(stack.ONLY),
        **({"configs": stack.CONFIGS} if stack.CONFIGS else {}),
        **new["meta"],
    }
    runs = [
        r
        for r in merged["meta"].get("partial_runs", [])
        if (set(r["only"]), r.get("configs", [])) != (stack.ONLY, stack.CONFIGS)
    ]
    merged["meta"]["partial_runs"] = [*runs, entry]
    return merged


def merge_configs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Scenario 1 of a BENCH_CONFIGS run into the published one: the new run's configurations
    (and the raw ASGI row measured beside one of them) replace their rows, fan-out and product
    page, the others stay;
    the rows are ordered as the configurations are listed (new.configs_order)."""
    replaced = set(new["configs"]) | {run["config"] for run in new["runs"]}
    order: list[str] = new.get("configs_order") or []

    def position(config: str) -> float:
        # "raw ASGI (uvicorn x2)" right after "uvicorn x2"; unknown names last.
        base = config[len("raw ASGI (") : -1] if config.startswith("raw ASGI (") else config
        offset = 0.5 if base != config else 0.0
        return order.index(base) + offset if base in order else len(order) + offset

    def merged(key: str) -> list[dict[str, Any]]:
        kept = [r for r in old.get(key, []) if r["config"] not in replaced]
        return sorted([*kept, *new.get(key, [])], key=lambda r: position(r["config"]))

    merged_rows = {key: merged(key) for key in ("runs", "switch_seconds")}
    if "product_page" in new:
        merged_rows["product_page"] = merged("product_page")
    return {**old, **merged_rows}


def main() -> int:
    if not shutil.which("hey"):
        sys.exit("hey is not installed: `apt-get install -y hey` (make bench does it as root)")
    stack.OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {
        "meta": {
            "quick": stack.QUICK,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "host": stack.host_info(),
            "load_average_start": list(os.getloadavg()),
            "project": stack.PROJECT,
            "rounds": stack.ROUNDS,
        }
    }
    try:
        log(f"building images (tag {stack.TAG})")
        build_started = time.monotonic()
        # The Django images first (runtime, built by migrate here; web's bench image on top):
        # the nginx image copies its static files out of the runtime image.
        compose("build", "migrate", "web", timeout=1800)
        compose("build", timeout=1800)
        results["meta"]["build_seconds"] = round(time.monotonic() - build_started, 1)
        log("cold start")
        start = cold_start()
        log(f"healthy after {start['seconds']} s")
        compose("exec", "-T", "web", "python3", "manage.py", "seed", "--orders", "1000")
        for scenario in scenarios.MEASURED:
            # Scenario 8 reports the cold start above beside the image sizes.
            measure = (
                functools.partial(images.measure, cold_start=start)
                if scenario is images
                else scenario.measure
            )
            step(results, scenario.STEP, measure)
    finally:
        log("tearing down")
        compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        finished = time.time()
        results["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished))
        results["meta"]["wall_seconds"] = round(finished - started, 1)
        results["meta"]["load_average_end"] = list(os.getloadavg())
        wall = results["meta"]["wall_seconds"]
        if stack.ONLY:
            results = merge_partial(results)
        stack.RESULTS.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
        log(f"wrote {stack.RESULTS} (this run: {wall} s)")
    return 1 if results.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
