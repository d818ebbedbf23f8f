"""make bench's configuration lists, BENCH_CONFIGS' row-by-row merge and the report rows of
scenarios 1 (the seed's figures, gevent) and 2 (the HTTP clients): pure parts, no Docker."""

import json

from bench.scenarios import clients, fanout

from bench import hey, run, stack, web
from tests.bench.test_parsing import HEY_OK


def fanout_run(config: str, label: str, rps: float, path: str = "/bench/fanout/async") -> dict:
    c, n = (100, 1000) if label == "c100" else (1000, None)
    parsed = hey.parse(HEY_OK)
    return {**parsed, "config": config, "label": label, "ok_rps": rps, "path": path, "c": c, "n": n}


def test_gevent_row_runs_the_sequential_view_with_the_seeds_load(monkeypatch):
    monkeypatch.setattr(web, "cores", lambda: 2)
    for quick in (True, False):
        monkeypatch.setattr(stack, "QUICK", quick)
        gevent = next(c for c in web.all_web_configs() if c["name"].startswith("gevent"))
        assert gevent["worker_class"] == "gevent"
        assert gevent["command"].endswith(web.WSGI)
        assert gevent["path"] == "/bench/fanout/sync"
        # Not a "sync" row: the full n=1000 at c=100 (and c=1000), as the async rows get.
        assert not gevent.get("sync")


def test_bench_configs_select_by_name_but_the_default_stays_known(monkeypatch):
    monkeypatch.setattr(web, "cores", lambda: 2)
    monkeypatch.setattr(stack, "QUICK", False)
    monkeypatch.setattr(stack, "CONFIGS", ["gevent"])
    assert [c["name"] for c in web.web_configs()] == ["gevent x5"]
    assert web.default_config()["name"] == "uvicorn x2"
    names = [c["name"] for c in web.select_configs(web.all_web_configs(), ["sync x", "uvicorn x2"])]
    assert names == [
        "sync x5",
        "uvicorn x2",
        "uvicorn x2 (stock Django handler)",
        "uvicorn x2 (pooled, thread hops)",
        "uvicorn x2 (max_requests 1000)",
        "uvicorn x2 (head and body in two writes)",
        "uvicorn x2 (32 request threads)",
        "uvicorn x2 (128 request threads)",
    ]


def test_http_clients_are_the_seeds_two_and_the_apps_own():
    labels = [label for label, _ in clients.HTTP_CLIENTS]
    assert labels[:3] == list(clients.CLIENT_CLAIM_RPS)
    paths = [path for _, path in clients.HTTP_CLIENTS]
    assert "/bench/fanout/async-httpx" in paths
    assert "/bench/fanout/async-httpx-new-client" in paths
    assert len(set(paths)) == len(paths)


def test_configs_run_replaces_only_its_rows_in_order(tmp_path, monkeypatch):
    order = ["sync x5", "gevent x5", "uvicorn x2", "uvicorn x4"]
    published = {
        "meta": {"started": "full"},
        "worker_classes": {
            "limit_rps": 333.3,
            "runs": [
                {"config": "sync x5", "label": "c100", "ok_rps": 5},
                {"config": "uvicorn x2", "label": "c100", "ok_rps": 170},
                {"config": "raw ASGI (uvicorn x2)", "label": "c100", "ok_rps": 215},
                {"config": "uvicorn x4", "label": "c100", "ok_rps": 150},
            ],
            "switch_seconds": [{"config": "sync x5"}, {"config": "uvicorn x2"}],
        },
        "http_client": {"runs": ["kept"]},
        "product_detail": {"runs": ["kept"]},
    }
    (tmp_path / "results.json").write_text(json.dumps(published))
    monkeypatch.setattr(stack, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(stack, "ONLY", {"web_configs"})
    monkeypatch.setattr(stack, "CONFIGS", ["gevent", "uvicorn x2"])
    new = {
        "meta": {"started": "partial"},
        "worker_classes": {
            "limit_rps": 333.3,
            "configs": ["gevent x5", "uvicorn x2"],
            "configs_order": order,
            "runs": [
                {"config": "gevent x5", "label": "c100", "ok_rps": 90},
                {"config": "uvicorn x2", "label": "c100", "ok_rps": 160},
                {"config": "raw ASGI (uvicorn x2)", "label": "c100", "ok_rps": 200},
            ],
            "switch_seconds": [{"config": "gevent x5"}, {"config": "uvicorn x2"}],
        },
    }
    merged = run.merge_partial(new)
    rows = [(r["config"], r["ok_rps"]) for r in merged["worker_classes"]["runs"]]
    assert rows == [
        ("sync x5", 5),
        ("gevent x5", 90),
        ("uvicorn x2", 160),
        ("raw ASGI (uvicorn x2)", 200),
        ("uvicorn x4", 150),
    ]
    switches = [s["config"] for s in merged["worker_classes"]["switch_seconds"]]
    assert switches == ["sync x5", "gevent x5", "uvicorn x2"]
    assert "configs" not in merged["worker_classes"]
    # Scenarios 2-4 were not run: the published ones stay.
    assert merged["http_client"] == {"runs": ["kept"]}
    assert merged["product_detail"] == {"runs": ["kept"]}
    assert merged["meta"]["partial_runs"] == [
        {"only": ["web_configs"], "configs": ["gevent", "uvicorn x2"], "started": "partial"}
    ]


def test_fanout_table_puts_the_seeds_figures_beside_sync_and_the_default_row():
    data = {
        "limit_rps": 333.3,
        "calls": 3,
        "upstream_ms": 300,
        "default_config": "uvicorn x2",
        "runs": [
            fanout_run("sync x5", "c100", 5.0, "/bench/fanout/sync"),
            fanout_run("gevent x5", "c100", 90.0, "/bench/fanout/sync"),
            fanout_run("uvicorn x2", "c100", 170.0),
            {**fanout_run("uvicorn x2", "c1000", 120.0), "seconds": 15},
        ],
    }
    headline: list[list[str]] = []
    text = "\n".join(fanout.section({"worker_classes": data}, headline))
    assert "| sync x5 | c=100, n=1000 | 32.76 (sync) | **5** (5) |" in text
    assert "| uvicorn x2 | c=100, n=1000 | 318 (Uvicorn) | **170** (170) |" in text
    assert "| uvicorn x2 | c=1000, 15 s | - |" in text
    assert "| gevent x5 | c=100, n=1000 | - | **90** (90) |" in text
    assert "**34.0x**" in text  # 170 / 5 against the seed's 9.7x
    assert "81% of the 111 req/s a sequential view allows" in text  # 90 / 111
    speedup = next(row for row in headline if row[0] == "1. Uvicorn / sync workers, c=100")
    assert speedup[1] == "9.7x (318 / 32.76 req/s)"
    assert speedup[2].startswith("34.0x")


def test_default_row_of_older_results_is_the_one_beside_the_raw_ceiling():
    runs = [fanout_run("uvicorn x4", "c100", 1), fanout_run("raw ASGI (uvicorn x2)", "c100", 1)]
    assert fanout.default_config({"runs": runs}) == "uvicorn x2"
    assert fanout.default_config({"runs": runs[:1]}) is None


def test_client_table_holds_each_client_against_its_claim():
    runs = [
        {**hey.parse(HEY_OK), "label": label, "ok_rps": rps}
        for label, rps in (
            ("shared httpx client", 20.0),
            ("httpx client per request", 66.0),
            ("shared aiohttp session", 150.0),
            ("aiohttp session per request", 120.0),
        )
    ]
    headline: list[list[str]] = []
    text = "\n".join(clients.section({"http_client": {"runs": runs}}, headline))
    assert "| shared httpx client | ~25 | **20** (20) | 80% |" in text
    assert "| httpx client per request | ~60 | **66** (66) | 110% |" in text
    assert "| shared aiohttp session | ~270 | **150** (150) | 56% |" in text
    assert "| aiohttp session per request | - | **120** (120) | - |" in text
    assert "shared aiohttp session / shared httpx client: **7.50x** (claimed ~10x)" in text
    assert "shared aiohttp session / httpx client per request: **2.27x** (claimed ~4x)" in text
    assert "**Behind the claimed figures:** shared httpx client 20 vs ~25; " in text
    assert [row[1] for row in headline] == ["~25 req/s", "~60 req/s", "~270 req/s", "~10x", "~4x"]


def test_client_section_of_older_results_without_httpx_rows():
    runs = [{**hey.parse(HEY_OK), "label": "shared aiohttp session", "ok_rps": 150.0}]
    text = "\n".join(clients.section({"http_client": {"runs": runs}}, []))
    assert "| shared aiohttp session | ~270 |" in text
    assert "Ratios:" not in text


def locked(path: str) -> dict[str, str]:
    versions = {}
    for line in (stack.ROOT / path).read_text().splitlines():
        if line and not line[0].isspace() and "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            versions[name] = version
    return versions


def test_gevent_and_httpx_are_locked_for_the_bench_image_only():
    runtime, bench = locked("requirements.lock"), locked("requirements-bench.lock")
    # The web image (held to WEB_IMAGE_MAX_MB) installs requirements.lock: neither is in it.
    assert not {"gevent", "greenlet", "httpx", "httpcore"} & set(runtime)
    assert {"gevent", "httpx"} <= set(bench)
    # The bench image is the runtime image plus these: every runtime package at its version.
    assert {name: bench.get(name) for name in runtime} == runtime


def test_even_rounds_run_in_reverse_so_no_run_always_comes_first():
    runs = ["off", "metrics", "tracing"]
    assert stack.in_round_order(runs, 1) == runs
    assert stack.in_round_order(runs, 2) == runs[::-1]
    assert stack.in_round_order(runs, 3) == runs
    # Over a forward and a reversed round every run holds the same mean position.
    positions = {run: sum(stack.in_round_order(runs, r).index(run) for r in (1, 2)) for run in runs}
    assert len(set(positions.values())) == 1
