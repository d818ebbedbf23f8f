"""Scenario 5: preload_app on vs off, the Uvicorn workers' memory."""

import time
from typing import Any

from bench import claims, incontainer, stack, web
from bench.stats import group, num, opening, pct, table

STEP = "preload"
PRELOAD_WORKERS = [2] if stack.QUICK else [2, 4, 8]
SAVED = claims.get("preload.pss_saved")
# Issue 24's goals for preload with the warm-up and gc.freeze() (config/preload.py): the share
# of the workers' PSS saved against no preload, by worker count.
FREEZE_GOALS = {4: 0.5, 8: 0.6}
# What the workers serve here: the list, the product page and a fan-out. The deployment names
# them as its hot paths (GUNICORN_PRELOAD_WARM_PATHS, .env.example), so a preloading master
# serves each before it forks.
PATHS = ("/api/products", "/api/products/1", "/bench/fanout/async?latency_ms=0")


def measure(results: dict[str, Any]) -> None:
    """Scenario 5: Uvicorn workers' memory with preload_app on and off, after the same warm-up;
    on and off alternate at each worker count."""
    base = web.default_config()
    rows = []
    for workers in PRELOAD_WORKERS:
        for preload, freeze in ((True, True), (True, False), (False, False)):
            config = {
                **base,
                "workers": workers,
                "env": {
                    "GUNICORN_PRELOAD_FREEZE": "true" if freeze else "false",
                    "GUNICORN_PRELOAD_WARM_PATHS": ",".join(("/api/openapi.json", *PATHS)),
                },
            }
            stack.log(f"preload={preload} freeze={freeze} workers={workers}")
            web.switch_web(config, preload=preload)
            # Enough requests that every worker has served the list, the detail and a fan-out.
            for path in PATHS:
                stack.warm(path, n=50 * workers, c=4 * workers)
            time.sleep(1)
            memory = stack.in_web(incontainer.script("gunicorn_memory"))
            workers_found = memory["workers"]
            rows.append(
                {
                    "workers": workers,
                    "preload": preload,
                    "freeze": freeze,
                    "workers_found": len(workers_found),
                    "workers_pss_mb": round(sum(w["pss_kb"] for w in workers_found) / 1024, 1),
                    "workers_uss_mb": round(sum(w["uss_kb"] for w in workers_found) / 1024, 1),
                    "workers_rss_mb": round(sum(w["rss_kb"] for w in workers_found) / 1024, 1),
                    "master_pss_mb": round(memory["master"]["pss_kb"] / 1024, 1),
                }
            )
            stack.log(f"  {rows[-1]}")
    # What binds the saving: a worker's own pages, forked from a copy of the preloaded master.
    fork_cost = stack.in_web(incontainer.script("fork_cost"))
    stack.log(f"  fork cost: {fork_cost}")
    results["preload"] = {"rows": rows, "fork_cost": fork_cost}


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(
        results, "preload", "5. preload_app on vs off: worker memory", items="rows"
    )
    if data is None:
        return lines
    lines += [
        f"**Claim** (gunicorn.conf.py): {claims.wording('preload')}. Uvicorn workers, after "
        "the same warm-up (the "
        "list, the detail and a fan-out, 50 requests per worker each); PSS and USS summed over "
        "the Gunicorn master's children, from /proc/<pid>/smaps_rollup inside the web container.",
        "",
    ]
    rows = []
    by_workers = group(data["rows"], "workers")
    for (workers,), pair in by_workers.items():
        # Results from before config/preload.py have no "freeze": their preload had none.
        frozen = next((r for r in pair if r["preload"] and r.get("freeze")), None)
        on = next((r for r in pair if r["preload"] and not r.get("freeze")), None)
        off = next((r for r in pair if not r["preload"]), None)
        for row in pair:
            rows.append(
                [
                    str(workers),
                    ("on + freeze" if row.get("freeze") else "on") if row["preload"] else "off",
                    str(row["workers_found"]),
                    num(row["workers_pss_mb"], 1),
                    num(row["workers_uss_mb"], 1),
                    num(row["workers_rss_mb"], 1),
                    num(row["master_pss_mb"], 1),
                ]
            )
        if on and off and off["workers_pss_mb"]:
            saved = 1 - on["workers_pss_mb"] / off["workers_pss_mb"]
            saved_total = 1 - (on["workers_pss_mb"] + on["master_pss_mb"]) / (
                off["workers_pss_mb"] + off["master_pss_mb"]
            )
            rows.append(
                [
                    str(workers),
                    "**saved**",
                    "",
                    f"**{pct(saved)}**",
                    "",
                    "",
                    f"(incl. master: {pct(saved_total)})",
                ]
            )
            headline.append(
                [
                    f"5. preload saves, {workers} workers (PSS)",
                    f"{SAVED.sign} {SAVED.value:g}",
                    pct(saved),
                    "-",
                ]
            )
        if frozen and off and off["workers_pss_mb"]:
            saved = 1 - frozen["workers_pss_mb"] / off["workers_pss_mb"]
            rows.append([str(workers), "**saved, + freeze**", "", f"**{pct(saved)}**", "", "", ""])
            goal = FREEZE_GOALS.get(workers)
            headline.append(
                [
                    f"5. preload + warm-up and gc.freeze() saves, {workers} workers (PSS)",
                    "-" if goal is None else f"≥ {pct(goal)}",
                    pct(saved),
                    "-" if goal is None else pct(saved / goal),
                ]
            )
    lines += table(
        [
            "workers",
            "preload",
            "found",
            "workers PSS MB",
            "workers USS MB",
            "workers RSS MB",
            "master PSS MB",
        ],
        rows,
    )
    lines += [
        "**How to read it:** PSS splits each shared page among the processes mapping it, so "
        "pages the workers inherit from a preloaded master count only in part per worker; USS "
        "is what each worker holds alone. With preload the master itself holds Django (its "
        "PSS grows), so the whole-container saving (incl. master) is smaller than the workers' "
        "and grows with the worker count. It stops well short of the whole import because "
        "CPython's reference counting and garbage collector write to the objects they touch, "
        'and a page written after fork is copied into the worker. "on + freeze" (the '
        "default, `GUNICORN_PRELOAD_FREEZE`): the master also builds the URL resolver, the "
        "OpenAPI schema and the template loaders, imports what a worker would import once "
        "forked (Uvicorn's event loop and HTTP parser, the cache backends), serves the "
        "requests GUNICORN_PRELOAD_WARM_PATHS names, then runs gc.freeze(), so the workers' "
        "collections never write to what they inherited (app/config/preload.py).",
        "",
    ]
    lines += binds(data.get("fork_cost"))
    return lines


def binds(cost: dict[str, Any] | None) -> list[str]:
    """What binds the saving, from bench/incontainer/fork_cost.py's measurement."""
    if not cost:
        return []

    def mb(kb: float) -> str:
        return num(kb / 1024, 1)

    written = cost["served_kb"] - cost["idle_kb"] - cost["new_objects_kb"]
    once = cost["served_kb"] - cost["served_after_warm_kb"]
    return [
        "**What binds it** (bench/incontainer/fork_cost.py: a copy of the preloaded master, "
        "built in the web container as Gunicorn builds it, forking as Gunicorn forks): a child "
        f"holds {mb(cost['idle_kb'])} MB alone before it serves. After serving the warm-up "
        f"paths {cost['rounds']} times each, in-process through the application, it holds "
        f"{mb(cost['served_kb'])} MB, of which {mb(cost['new_objects_kb'])} MB are objects it "
        f"allocated (tracemalloc). The other {mb(written)} MB are pages inherited from the "
        "master and written to: CPython writes an object's reference count each time it is "
        "used, which gc.freeze() does not prevent. That is after the requests the master "
        "serves itself before the fork (config/preload.py's preload_requests: the paths "
        "GUNICORN_PRELOAD_WARM_PATHS names, here the OpenAPI document and the scenario's three, "
        "each twice, counted in no metric). When this copy of the master has served the same "
        "paths once more, a child serving them holds "
        f"{mb(cost['served_after_warm_kb'])} MB: what the master's warm-up leaves written once "
        f"is {mb(once)} MB; the rest is written on every use.",
        "",
    ]
