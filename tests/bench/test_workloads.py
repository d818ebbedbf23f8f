"""make bench's scenarios 11 (sequential vs concurrent upstream calls at c=1) and 12 (the three
worker profiles on CPU-bound and mixed views): their configurations and report rows, pure parts,
no Docker."""

from bench.scenarios import profiles, sequential

from bench import hey, stack, web
from tests.bench.test_parsing import HEY_OK


def single_run(label: str, p50_s: float) -> dict[str, object]:
    parsed = hey.parse(HEY_OK)
    percentiles = {50: p50_s, 95: p50_s * 1.1, 99: p50_s * 1.2}
    return {**parsed, "percentiles_s": percentiles, "average_s": p50_s, "label": label, "c": 1,
            "n": 40, "round": 1}  # fmt: skip


def sequential_results(sequential_s: float, concurrent_s: float) -> dict[str, object]:
    runs = [single_run("sequential", sequential_s), single_run("concurrent", concurrent_s)]
    data = {
        "upstream_ms": 350,
        "calls": 3,
        "quick": False,
        "rounds": 1,
        "config": "uvicorn x2",
        "runs": runs,
    }
    return {"sequential": data}


def test_the_concurrent_calls_are_held_against_the_seeds_ratio():
    headline: list[list[str]] = []
    text = "\n".join(sequential.section(sequential_results(1.080, 0.380), headline))
    assert "| sequential | 1,050 | **1080** (1080) |" in text
    # 380 / 1080 = 0.35: at most the seeds' 400 / 1,050 = 0.38.
    assert "median 0.35" in text
    assert "**meets** the seeds' claim" in text
    assert headline == [
        [
            "11. fan-out at c=1, concurrent / sequential calls (p50)",
            "≤ 0.38 (400 / 1,050 ms)",
            "0.35 (380 / 1080 ms)",
            "-",
        ]
    ]
    slow = "\n".join(sequential.section(sequential_results(1.080, 0.600), []))
    assert "is **behind** the seeds' claim" in slow


def test_both_views_make_the_same_calls_at_the_seeds_latency():
    assert sequential.SEED_MS["sequential"].value == sequential.CALLS * sequential.UPSTREAM_MS
    paths = [path for _, path in sequential.VIEWS]
    assert all(path.endswith(f"?latency_ms={sequential.UPSTREAM_MS}") for path in paths)
    assert [path.split("?")[0] for path in paths] == [
        "/bench/fanout/sequential",
        "/bench/fanout/async",
    ]


def test_each_profile_runs_as_it_ships(monkeypatch):
    monkeypatch.setattr(web, "cores", lambda: 2)
    for quick in (True, False):
        monkeypatch.setattr(stack, "QUICK", quick)
        configs = profiles.profile_configs()
        assert [c["name"] for c in configs] == ["sync x5", "gthread x3x4", "uvicorn x2"]
        assert [c["profile"] for c in configs] == ["cpu", "mixed", "io"]
        assert configs[2] == web.default_config()


def profile_run(view: str, profile: str, config: str, rps: float, label: str = "c20") -> dict:
    parsed = hey.parse(HEY_OK)
    c, seconds, n = (20, 10, None) if label == "c20" else (1, None, 10)
    return {**parsed, "ok_rps": rps, "view": view, "profile": profile, "config": config,
            "label": label, "c": c, "seconds": seconds, "n": n, "round": 1,
            "path": dict(profiles.VIEWS)[view]}  # fmt: skip


def profiles_results(cpu: dict[str, float], mixed: dict[str, float]) -> dict[str, object]:
    names = {"cpu": "sync x5", "mixed": "gthread x3x4", "io": "uvicorn x2"}
    runs = []
    for view, rps in (("CPU-bound", cpu), ("Mixed", mixed)):
        for profile, value in rps.items():
            runs.append(profile_run(view, profile, names[profile], 1.0, label="c1"))
            runs.append(profile_run(view, profile, names[profile], value))
    return {"profiles": {"c": 20, "seconds": 10, "rounds": 1, "quick": False, "runs": runs}}


def test_each_view_is_held_against_its_best_profile():
    headline: list[list[str]] = []
    results = profiles_results(
        cpu={"cpu": 50.0, "mixed": 48.0, "io": 47.0},
        mixed={"cpu": 60.0, "mixed": 100.0, "io": 140.0},
    )
    text = "\n".join(profiles.section(results, headline))
    assert "**Backs the advice:** `cpu` (sync x5) served 100%" in text
    # gthread served 100 req/s on the mixed view, Uvicorn 140: 71%, below the claimed 90%.
    assert "**Contradicts the advice:** `mixed` (gthread x3x4) served only 71% of `io`" in text
    assert "| `io` (uvicorn x2) | 421 | c=20, 10 s | **140** (140) |" in text
    assert "that round's best): 71%; ≥ 90% in 0 of 1." in text
    assert [row[-1] for row in headline] == ["100%", "71%"]
    assert headline[1][2] == "100 / 140 req/s (best: `io`)"


def test_sections_without_data():
    assert "Not measured this run." in sequential.section({}, [])
    assert "Not measured this run." in profiles.section({}, [])
