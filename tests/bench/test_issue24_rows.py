"""Issue 24's rows: every async server on the fan-out and the product page against the default,
the cached list against the same page uncached, and POST /api/orders against the seeds'
100 ms. Pure parts: configuration lists, merges and report rows, no Docker."""

import json

from bench.order_load import percentile
from bench.scenarios import fanout, list_cache, observability, orders

from bench import hey, run, stack, web
from tests.bench.test_parsing import HEY_OK

ALTERNATIVES = ["uvicorn x4", "gunicorn-asgi x2", "uvicorn-standalone x2", "granian x2"]


def hey_run(config: str, label: str, rps: float, **extra: object) -> dict:
    c = 100 if label == "c100" else 1000
    return {**hey.parse(HEY_OK), "config": config, "label": label, "ok_rps": rps, "c": c,
            "n": None, "seconds": 3, **extra}  # fmt: skip


def test_every_async_server_is_measured_on_the_product_page(monkeypatch):
    monkeypatch.setattr(web, "cores", lambda: 2)
    monkeypatch.setattr(stack, "QUICK", False)
    measured = [c["name"] for c in web.all_web_configs() if c.get("product_page")]
    threads = ["uvicorn x2 (32 request threads)", "uvicorn x2 (128 request threads)"]
    assert measured == ["uvicorn x2", *ALTERNATIVES, *threads]


def test_a_quick_run_measures_the_alternatives_bench_configs_names_exactly(monkeypatch):
    monkeypatch.setattr(web, "cores", lambda: 2)
    monkeypatch.setattr(stack, "QUICK", True)
    monkeypatch.setattr(stack, "CONFIGS", [])
    quick = [c["name"] for c in web.web_configs()]
    assert quick == ["sync x5", "gthread x3x4", "gevent x5", "uvicorn x2"]
    monkeypatch.setattr(stack, "CONFIGS", ["uvicorn x2", *ALTERNATIVES])
    # "uvicorn x2" names the default, not the handler variants it is a prefix of.
    assert [c["name"] for c in web.web_configs()] == ["uvicorn x2", *ALTERNATIVES]


def test_a_configs_run_replaces_its_product_page_rows_too(tmp_path, monkeypatch):
    published = {
        "meta": {"started": "full"},
        "worker_classes": {
            "runs": [{"config": "uvicorn x2", "ok_rps": 1}, {"config": "granian x2", "ok_rps": 2}],
            "switch_seconds": [],
            "product_page": [
                {"config": "uvicorn x2", "ok_rps": 10},
                {"config": "granian x2", "ok_rps": 20},
            ],
        },
    }
    (tmp_path / "results.json").write_text(json.dumps(published))
    monkeypatch.setattr(stack, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(stack, "ONLY", {"web_configs"})
    monkeypatch.setattr(stack, "CONFIGS", ["granian x2"])
    new = {
        "meta": {"started": "partial"},
        "worker_classes": {
            "configs": ["granian x2"],
            "configs_order": ["uvicorn x2", "granian x2"],
            "runs": [{"config": "granian x2", "ok_rps": 3}],
            "switch_seconds": [],
            "product_page": [{"config": "granian x2", "ok_rps": 30}],
        },
    }
    merged = run.merge_partial(new)["worker_classes"]
    assert [(r["config"], r["ok_rps"]) for r in merged["product_page"]] == [
        ("uvicorn x2", 10),
        ("granian x2", 30),
    ]


def test_the_default_leads_the_comparison_and_the_headline_names_the_strongest_alternative():
    page = [
        hey_run("granian x2", "c100", 110.0),
        hey_run("uvicorn x2", "c100", 100.0),
        hey_run("uvicorn x4", "c100", 90.0),
        hey_run("granian x2", "c1000", 80.0),
        hey_run("uvicorn x2", "c1000", 100.0),
    ]
    data = {
        "limit_rps": 333.3,
        "calls": 3,
        "upstream_ms": 300,
        "default_config": "uvicorn x2",
        "runs": [hey_run("uvicorn x2", "c100", 170.0)],
        "product_page": page,
    }
    headline: list[list[str]] = []
    text = "\n".join(fanout.section({"worker_classes": data}, headline))
    rows = [line for line in text.splitlines() if line.startswith("| product page |")]
    assert [row.split(" | ")[1] for row in rows] == [
        "**uvicorn x2** (default)", "granian x2", "uvicorn x4",
        "**uvicorn x2** (default)", "granian x2",
    ]  # fmt: skip
    assert [row.split(" | ")[-1] for row in rows] == [
        "1.00x |", "1.10x |", "0.90x |", "1.00x |", "0.80x |"
    ]  # fmt: skip
    verdicts = {row[0]: row[2] for row in headline if "every alternative" in row[0]}
    assert verdicts == {
        "1. product page, default (uvicorn x2) / every alternative, c=100": (
            "**no**: strongest alternative granian x2 at 1.10x the default"
        ),
        "1. product page, default (uvicorn x2) / every alternative, c=1000": (
            "yes: strongest alternative granian x2 at 0.80x the default"
        ),
    }


def worker_count_data(default_rps: float, double_rps: float) -> dict:
    runs = [
        hey_run(config, label, rps)
        for config, rps in (("uvicorn x2", default_rps), ("uvicorn x4", double_rps))
        for label in ("c100", "c1000")
    ]
    return {"limit_rps": 333.3, "calls": 3, "upstream_ms": 300, "default_config": "uvicorn x2",
            "runs": runs, "product_page": runs}  # fmt: skip


def test_the_worker_count_is_held_to_the_geometric_mean_of_the_four_loads():
    verdicts = []
    for data in (worker_count_data(100.0, 80.0), worker_count_data(100.0, 125.0)):
        headline: list[list[str]] = []
        fanout.section({"worker_classes": data}, headline)
        verdicts += [row[2:] for row in headline if row[0].startswith("1. worker count")]
    loads = "fan-out c=100 {0}, fan-out c=1000 {0}, product page c=100 {0}, product page c=1000 {0}"
    assert verdicts == [
        ["yes: " + loads.format("1.25"), "1.25"],
        ["**no**: " + loads.format("0.80"), "0.80"],
    ]


def test_a_run_without_twice_the_workers_on_every_load_has_no_worker_count_verdict():
    data = worker_count_data(100.0, 80.0)
    data["product_page"] = data["product_page"][:3]
    headline: list[list[str]] = []
    fanout.section({"worker_classes": data}, headline)
    assert [row for row in headline if row[0].startswith("1. worker count")] == []


def test_older_results_render_without_the_new_rows():
    headline: list[list[str]] = []
    assert list_cache.section({}, headline) == []
    assert orders.section({}, headline) == []
    assert headline == []


def test_cached_over_uncached_is_held_against_the_seeds_2_to_5x():
    runs = [
        {**hey.parse(HEY_OK), "label": "cached", "ok_rps": 900.0, "c": 50, "seconds": 4},
        {**hey.parse(HEY_OK), "label": "uncached", "ok_rps": 600.0, "c": 50, "seconds": 4},
    ]
    headline: list[list[str]] = []
    text = "\n".join(list_cache.section({"list_cache": {"seconds": 4, "runs": runs}}, headline))
    assert "Cached / uncached: **1.50x**, which is **behind** the seeds' 2-5x" in text
    assert headline == [
        [
            "14. cached / uncached product list, c=50",
            "2-5x (the seeds; ≥ 2x)",
            "1.50x (900 / 600 req/s)",
            "75%",
        ]
    ]


def test_order_latency_is_held_against_the_seeds_100_ms():
    run_ = {
        "ok_rps": 80.0, "average_s": 0.09, "percentiles_s": {"50": 0.06, "95": 0.14, "99": 0.2},
        "status": {"201": 640}, "errors": {}, "ok": 640, "failed": 0, "requests": 640,
        "orders": 640, "c": 10, "seconds": 8, "label": "a product each", "round": 1,
    }  # fmt: skip
    hot = {**run_, "label": "one product", "percentiles_s": {"50": 0.3, "95": 0.9, "99": 1.0}}
    data = {
        "clients": 10,
        "seconds": 8,
        "runs": [run_, hot],
        "orders": 640,
        "outbox_wait_s": 2.0,
        "after": {"outbox": {"sent": 640}, "delivered": 640},
    }
    headline: list[list[str]] = []
    text = "\n".join(orders.section({"orders": data}, headline))
    assert "640 orders placed; their confirmation rows sent 640" in text
    assert "the mail catcher received 640 of them" in text
    assert "| one product | c=10, 8 s | **80** (80) | 90 | **300** | 900 | 1000 | 0 |" in text
    # The headline is the seeds' case: one customer's order, a product each.
    assert [(row[0], row[3]) for row in headline] == [
        ("15. POST /api/orders, a product each, c=10, p50", "met"),
        ("15. POST /api/orders, a product each, c=10, p95", "**behind**"),
    ]


def test_what_binds_the_order_latency_is_the_cpu_an_order_costs_against_the_cores():
    run_ = {
        "ok_rps": 50.0, "average_s": 0.2, "percentiles_s": {"50": 0.19, "95": 0.3, "99": 0.4},
        "status": {"201": 400}, "errors": {}, "ok": 400, "failed": 0, "requests": 400,
        "orders": 400, "c": 10, "seconds": 8, "label": "a product each", "round": 1,
        "cpu_ms_per_ok": {
            "web": 20.0, "db-primary": 10.0, "load generator (bench)": 2.0,
            "the whole machine": 34.0,
        },
        "emails_behind": 120,
    }  # fmt: skip
    alone = {
        **run_, "c": 1, "label": "one customer alone", "ok_rps": 40.0,
        "percentiles_s": {"50": 0.03, "95": 0.05, "99": 0.06},
    }  # fmt: skip
    data = {
        "clients": 10, "seconds": 8, "runs": [run_, alone], "orders": 800, "cores": 2,
        "outbox_wait_s": 2.0, "after": {"outbox": {"sent": 800}, "delivered": 800},
        "cpu_ms_per_order": {
            "web": 20.0, "db-primary": 10.0, "worker-email": 6.0, "load generator (bench)": 2.0,
            "redis": 0.01,
        },
    }  # fmt: skip
    headline: list[list[str]] = []
    text = "\n".join(orders.section({"orders": data}, headline))
    assert "| one customer alone | c=1, 8 s | **40** (40) | 200 | **30** | 50 | 60 | 0 |" in text
    assert "| worker-email | 0.00 | 6.00 |" in text
    assert "| redis | 0.00 | 0.01 |" in text
    assert "| load generator (bench) | 2.00 | 2.00 |" in text
    assert "| elsewhere (Docker's proxy and daemons, the kernel) | 2.00 | - |" in text
    assert "| **the whole machine** (/proc/stat) | **34.00** | - |" in text
    # 34 ms an order at 50 orders/s: 1.7 of 2 cores; 10 clients at that rate wait 200 ms.
    assert "an order took 34.0 ms of the machine's CPU: at 50 orders/s, 85% of the" in text
    assert "with 120 confirmations still to send as a run ended" in text
    assert "a closed loop waits c / throughput: 200 ms (measured mean 200 ms)" in text
    assert "needs 100 orders/s, at most 20 ms of the machine's CPU an order" in text
    assert "One customer alone (nothing queued): p50 30 ms, p95 50 ms." in text
    assert [(row[0], row[3]) for row in headline] == [
        ("15. POST /api/orders, a product each, c=10, p50", "**behind**"),
        ("15. POST /api/orders, a product each, c=10, p95", "**behind**"),
        ("15. POST /api/orders, one customer alone, c=1, p50", "met (reference)"),
    ]


def test_one_shape_alone_is_described_as_one():
    run_ = {"label": "a product each"}
    assert orders.shapes_text({"runs": [run_]}).startswith("One shape: each customer ordering")


def test_order_percentiles_are_nearest_rank_as_hey_reports_them():
    ordered = [i / 100 for i in range(1, 101)]
    assert percentile(ordered, 50) == 0.5
    assert percentile(ordered, 99) == 0.99
    assert percentile([0.3], 95) == 0.3


def observability_results(cpu: dict[str, float], **data: object) -> dict:
    runs = [
        {**hey.parse(HEY_OK), "path": "/api/products", "c": 50, "seconds": 10, "label": state,
         "round": 1, "config": "uvicorn x2", "ok_rps": 1000 / ms, "web_cpu_ms_per_ok": ms}
        for state, ms in cpu.items()
    ]  # fmt: skip
    return {"observability": {"seconds": 10, "runs": runs, **data}}


def test_section_9_says_what_binds_tracings_goal_from_its_cpu_rows():
    cpu = {"off": 0.29, "metrics": 0.31, "tracing": 0.44, "dropped": 0.34, "all": 0.80}
    text = "\n".join(observability.section(observability_results(cpu), []))
    assert (
        "**What binds tracing's goal on `GET /api/products`** (web CPU per request, ms): 0.9 of "
        "off's throughput allows 0.32 (off 0.29 / 0.9). Metrics alone take 0.31; a request the "
        "sampler drops 0.34 (+0.03 for tracing); a kept one 0.46 more (every request traced: "
        "0.80). The default keeps a tenth of the requests, which adds 0.046: 0.39, 0.75 of "
        "off's: a dropped request alone already costs more than that (0.34 ms), whatever the "
        "kept ones cost. Where each state's CPU goes, by package and by function: `make "
        "profile`'s comparison of this path's states with off ([profile.md](benchmarks/"
        "profile.md))."
    ) in text
    cpu = {"off": 3.76, "metrics": 3.97, "tracing": 4.66, "dropped": 4.0, "all": 5.92}
    text = "\n".join(observability.section(observability_results(cpu), []))
    assert "a kept request may cost at most 1.78 ms more than a dropped one, against 1.92" in text


def test_section_9_weighs_a_kept_trace_by_the_share_the_cap_leaves():
    """At 1/0.44 ms = 2,273 req/s, 10 traces a second in each of 2 workers keep 0.9% of the
    requests, not a tenth; under the cap's throughput, a tenth still."""
    cpu = {"off": 0.29, "metrics": 0.30, "tracing": 0.44, "dropped": 0.31, "all": 0.80}
    capped = observability_results(cpu, traces_cap=10, workers=2)
    text = "\n".join(observability.section(capped, []))
    assert (
        "The default keeps 0.9% of the requests (the cap binds at the tracing state's "
        "throughput), which adds 0.004: 0.31, 0.92 of off's: a kept request may cost at most "
        "1.39 ms more than a dropped one, against 0.49 measured."
    ) in text
    assert "(`parentbased_traceidratio`, 0.1, at most `TRACES_MAX_PER_SECOND`=10 new" in text
    quiet = observability_results(cpu, traces_cap=1000, workers=2)
    assert "The default keeps a tenth of the requests" in "\n".join(
        observability.section(quiet, [])
    )


def test_the_tracing_state_is_the_settings_default_sampler():
    from django.conf import settings

    assert (
        observability.OBSERVABILITY["tracing"]["OTEL_TRACES_SAMPLER"]
        == settings.OTEL_TRACES_SAMPLER
    )
    assert settings.OTEL_TRACES_SAMPLER_ARG == observability.RATIO
    assert settings.TRACES_MAX_PER_SECOND == observability.TRACES_CAP
    tracing = observability.OBSERVABILITY["tracing"]
    assert tracing["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    assert tracing["TRACES_MAX_PER_SECOND"] == "5"


def test_section_9_has_no_budget_without_the_states_it_splits():
    cpu = {"off": 0.29, "metrics": 0.31, "tracing": 0.44}
    text = "\n".join(observability.section(observability_results(cpu), []))
    assert "What binds" not in text


def test_the_request_threads_are_held_against_half_and_twice_as_many_not_as_alternatives():
    from runtime.config import REQUEST_THREADS_DEFAULT

    assert web.REQUEST_THREADS == REQUEST_THREADS_DEFAULT
    runs = [
        hey_run(config, label, rps)
        for config, rps in (
            ("uvicorn x2", 100.0),
            ("uvicorn x2 (32 request threads)", 80.0),
            ("uvicorn x2 (128 request threads)", 125.0),
            ("granian x2", 90.0),
        )
        for label in ("c100", "c1000")
    ]
    data = {"limit_rps": 333.3, "calls": 3, "upstream_ms": 300, "default_config": "uvicorn x2",
            "runs": runs, "product_page": runs}  # fmt: skip
    headline: list[list[str]] = []
    fanout.section({"worker_classes": data}, headline)
    verdicts = {row[0]: row[2:] for row in headline if row[0].startswith("1. request threads")}
    loads = "fan-out c=100 {0}, fan-out c=1000 {0}, product page c=100 {0}, product page c=1000 {0}"
    assert verdicts == {
        "1. request threads: uvicorn x2 (64, default) / 32, geometric mean of four loads": [
            "yes: " + loads.format("1.25"),
            "1.25",
        ],
        "1. request threads: uvicorn x2 (64, default) / 128, geometric mean of four loads": [
            "**no**: " + loads.format("0.80"),
            "0.80",
        ],
    }
    # A variant of the default's own limit is no alternative server: no verdict names it.
    alternatives = [row for row in headline if "every alternative" in row[0]]
    assert alternatives
    assert not any("request threads" in row[2] for row in alternatives)


def test_a_lead_over_the_default_says_what_it_cost_in_web_cpu():
    def run(config: str, label: str, rps: float, cpu: float, cores: float) -> dict:
        return hey_run(config, label, rps, web_cpu_ms_per_ok=cpu, web_cores=cores)

    runs = [
        run("uvicorn x2", "c100", 100.0, 2.0, 0.6),
        run("uvicorn x2", "c1000", 100.0, 2.0, 1.0),
        run("uvicorn x4", "c100", 100.0, 1.5, 0.6),
        # Ahead by more than the noise, at no less CPU per request and on more cores.
        run("uvicorn x4", "c1000", 120.0, 2.1, 1.3),
    ]
    data = {"limit_rps": 333.3, "calls": 3, "upstream_ms": 300, "default_config": "uvicorn x2",
            "runs": runs, "product_page": runs}  # fmt: skip
    headline: list[list[str]] = []
    lines = fanout.section({"worker_classes": data}, headline)
    (leads,) = [line for line in lines if line.startswith("**Where an alternative leads")]
    lead = (
        "c=1000 (uvicorn x4 1.20x: web CPU 2.10 ms a request on 1.30 cores, the default 2.00 ms "
        "on 1.00; it spent no less CPU per request: its lead is CPU it took from what shares "
        "the cores)"
    )
    assert leads.count(lead) == 2  # the fan-out and the product page
    assert "c=100 " not in leads  # at c=100 it is level: no lead to explain
    row = next(line for line in lines if line.startswith("| fan-out | uvicorn x4 | c=1000"))
    assert "| 2.10 | 1.30 | 1.20x |" in row
