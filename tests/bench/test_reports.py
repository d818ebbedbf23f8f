"""make bench's scenario 7 table and BENCH_ONLY's merge: pure parts, no Docker."""

import json

from bench.scenarios import fanout, reports

from bench import hey, run, stack
from tests.bench.test_parsing import HEY_OK


def report_row(orders: int, seconds: float, peak_mib: float) -> dict[str, object]:
    kb = int(peak_mib * 1024)
    return {
        "label": f"{orders:,}",
        "order_count": orders,
        "state": "done",
        "seconds": seconds,
        "cpu_seconds": seconds * 0.8,
        "peak_rss_kb": kb,
        "sampled_peak_rss_kb": kb,
        "rss_before_kb": kb - 1024,
    }


def reports_results(*rows: dict[str, object]) -> dict[str, object]:
    return {"reports": {"chunk_size": 2000, "started": "now", "rows": list(rows)}}


def test_report_section_holds_the_largest_report_against_the_smallest():
    headline: list[list[str]] = []
    lines = reports.section(
        reports_results(
            report_row(10_000, 0.4, 96.6),
            report_row(100_000, 2.3, 97.8),
            report_row(1_000_000, 23.0, 106.0),
        ),
        headline,
    )
    text = "\n".join(lines)
    assert "| 1,000,000 |" in text
    assert "within the 1.20x limit" in text
    peak, timing = headline
    assert peak[2].startswith("1.10x")  # 106.0 / 96.6
    assert timing[1] == "linear: 10x"
    assert timing[2].startswith("10.0x time")
    assert "linear within the noise" in text


def test_report_section_says_so_when_time_grows_faster_than_the_orders():
    lines = reports.section(
        reports_results(report_row(100_000, 5.0, 100.0), report_row(1_000_000, 120.0, 101.0)),
        [],
    )
    assert "**not linear** here" in "\n".join(lines)


def test_report_section_says_so_when_memory_grows_with_the_orders():
    headline: list[list[str]] = []
    lines = reports.section(
        reports_results(report_row(10_000, 0.4, 100.0), report_row(1_000_000, 40.0, 400.0)),
        headline,
    )
    assert "**over** the 1.20x limit" in "\n".join(lines)
    assert headline[0][2].startswith("4.00x")


def test_report_section_without_data():
    assert "Not measured this run." in reports.section({}, [])


def test_partial_run_replaces_only_its_scenarios(tmp_path, monkeypatch):
    full = {
        "meta": {"started": "full"},
        "pgbouncer": {"rows": [1]},
        "reports": {"rows": ["old"]},
        "failures": {"reports": "boom", "images": "kept"},
    }
    (tmp_path / "results.json").write_text(json.dumps(full))
    monkeypatch.setattr(stack, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(stack, "ONLY", {"reports"})
    merged = run.merge_partial(
        {"meta": {"started": "partial"}, "reports": {"rows": ["new"]}, "step_seconds": {}}
    )
    assert merged["pgbouncer"] == {"rows": [1]}
    assert merged["reports"] == {"rows": ["new"]}
    assert merged["failures"] == {"images": "kept"}
    assert merged["meta"]["started"] == "full"
    assert merged["meta"]["partial_runs"] == [{"only": ["reports"], "started": "partial"}]
    (tmp_path / "results.json").write_text(json.dumps(merged))
    again = run.merge_partial({"meta": {"started": "again"}, "reports": {"rows": ["newer"]}})
    # One entry per scenario set: the run whose figures the file holds.
    assert again["meta"]["partial_runs"] == [{"only": ["reports"], "started": "again"}]


def test_fanout_section_compares_each_variant_with_the_default():
    ok = hey.parse(HEY_OK)  # 322.6 req/s, 990 answers of 1,000
    slower = {"uvicorn x2": 1, "uvicorn x2 (pooled, thread hops)": 1.25}
    slower |= {"uvicorn x2 (stock Django handler)": 2, "uvicorn x2 (max_requests 1000)": 1.25}
    slower |= {"uvicorn x2 (head and body in two writes)": 1.1}
    runs = [
        {**ok, "config": config, "label": "c100", "ok_rps": ok["ok_rps"] / factor}
        for config, factor in slower.items()
    ]
    rows = [line for line in fanout.handler_comparison({"runs": runs}) if line.startswith("| ")]
    # Stock, pooled with hops, the default, max_requests 1000, two writes: against the default.
    assert [row.rstrip(" |").split(" | ")[-1] for row in rows[1:]] == [
        "**0.50x**",
        "**0.80x**",
        "**1.00x**",
        "**0.80x**",
        "**0.91x**",
    ]
    assert fanout.handler_comparison({"runs": runs[:1]}) == []


def test_the_default_is_held_against_the_targets_and_the_ceiling_at_each_load():
    ok = hey.parse(HEY_OK)
    rps = {
        ("uvicorn x2", "c100"): 300.0,
        ("raw ASGI (uvicorn x2)", "c100"): 310.0,
        ("uvicorn x2", "c1000"): 400.0,
        ("raw ASGI (uvicorn x2)", "c1000"): 600.0,
    }
    runs = [
        {
            **ok,
            "config": config,
            "label": label,
            "ok_rps": value,
            "c": int(label[1:]),
            "seconds": 10,
        }
        for (config, label), value in rps.items()
    ]
    data = {"limit_rps": 333.3, "calls": 3, "upstream_ms": 300, "runs": runs}
    data["default_config"] = "uvicorn x2"
    headline: list[list[str]] = []
    text = "\n".join(fanout.section({"worker_classes": data}, headline))
    # 300 of 333 req/s is 90.0%: behind the seed's 95.5%; the ceiling (93.0%) is too.
    assert "reached 90.0% of the limit and is **behind** the seed's 95.5%" in text
    assert "The ceiling itself is below the target" in text
    wide = next(row for row in headline if "c=1000" in row[0])
    assert wide[-1] == "67%"  # 400 / 600: above the 60% target
    assert "target 60%" in wide[1]
