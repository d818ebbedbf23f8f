"""Scenario 12: the three worker profiles (GUNICORN_PROFILE cpu, mixed, io) on a CPU-bound view
and a mixed one, in the same run, rounds interleaving the profiles: does the measurement back
the advice runtime/config.py gives for each?"""

from typing import Any

from bench import claims, stack, web
from bench.stats import (
    combine,
    group,
    load_cells,
    load_columns,
    ms,
    num,
    opening,
    pct,
    ratio,
    table,
)

STEP = "profiles"

PROFILES = ("cpu", "mixed", "io")
# bench_endpoints.views: plain sync views, so every worker model runs the same code (the Uvicorn
# workers on a request thread, runtime/asgi.py).
VIEWS = (
    ("CPU-bound", "/bench/cpu"),
    ("Mixed", "/bench/mixed"),
)
C = 20
SECONDS = 5 if stack.QUICK else 10
# Single requests first: what one request of the view costs alone, in each profile.
N_SINGLE = 10

# Per view, the profile runtime/config.py advises for it and how close to the best it must be.
ADVICE = {
    "CPU-bound": claims.get("profiles.cpu_view"),
    "Mixed": claims.get("profiles.mixed_view"),
}


def profile_configs() -> list[dict[str, Any]]:
    """Each profile as it ships: scenario 1's first configuration of that profile with the
    profile's own worker class and settings (the gevent row and the variants left out)."""
    shipped = [c for c in web.all_web_configs() if not c.get("worker_class") and "env" not in c]
    return [next(c for c in shipped if c["profile"] == profile) for profile in PROFILES]


def measure(results: dict[str, Any]) -> None:
    runs: list[dict[str, Any]] = []
    results["profiles"] = {
        "c": C,
        "seconds": SECONDS,
        "rounds": stack.ROUNDS,
        "quick": stack.QUICK,
        "runs": runs,
    }
    try:
        for round_ in range(1, stack.ROUNDS + 1):
            for config in profile_configs():
                stack.log(
                    f"round {round_}: GUNICORN_PROFILE={config['profile']} ({config['name']})"
                )
                web.switch_web(config)
                labels = {"config": config["name"], "profile": config["profile"], "round": round_}
                for view, path in VIEWS:
                    stack.warm(path, n=2 * C, c=C)
                    runs.append(stack.load(path, c=1, n=N_SINGLE, label="c1", view=view, **labels))
                    runs.append(
                        stack.load(path, c=C, seconds=SECONDS, label=f"c{C}", view=view, **labels)
                    )
    finally:
        web.switch_web(web.default_config())


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(
        results, "profiles", "12. The three worker profiles on CPU-bound and mixed views"
    )
    if data is None:
        return lines
    lines += [
        f"**Claim:** {claims.wording('profiles')}. Two plain sync views (bench_endpoints.views), "
        "the same code under every profile: `/bench/cpu`, a fixed amount of pure-Python work "
        "and no I/O; `/bench/mixed`, a fifth of that work, the product's database read "
        "(`shop.selectors.product_get`: the replica through PgBouncer) and one 50 ms upstream "
        "call (blocking urllib). Web recreated per profile as it ships (workers and threads "
        f"from runtime/config.py), the profiles interleaved in each of {data['rounds']} "
        "round(s); per view first "
        f"c=1 (n={N_SINGLE}: what one request costs alone), then c={data['c']} for "
        f"{data['seconds']} s. Each profile's throughput is held against the best profile's "
        "for that view, measured in the same run (req/s: the median over the rounds)."
        + (" Quick run (`BENCH_QUICK=1`): one round, shorter runs." if data["quick"] else ""),
        "",
    ]
    by_view = group(data["runs"], "view")
    for view, _ in VIEWS:
        runs = by_view.get((view,))
        if not runs:
            continue
        loaded = [r for r in runs if r["label"] != "c1"]
        per_config = group(loaded, "config")
        rps = {config: combine(rs)["rps"] or 0 for (config,), rs in per_config.items()}
        best = max(rps, key=lambda config: rps[config])
        singles = group([r for r in runs if r["label"] == "c1"], "config")
        rows = []
        for (config,), rs in per_config.items():
            c = combine(rs)
            single = combine(singles[(config,)]) if (config,) in singles else None
            rows.append(
                [
                    f"`{rs[0]['profile']}` ({config})",
                    ms(single["p50_s"]) if single else "-",
                    *load_cells(rs[0], c),
                    f"**{pct(ratio(c['rps'], rps[best]))}**",
                ]
            )
        lines += [f"**{view} view** (`{runs[0]['path']}`)", ""]
        lines += table(
            ["profile", "c=1 p50 ms", *load_columns(each="round"), "/ best profile"],
            rows,
        )
        lines += verdict(view, loaded, rps, best, headline)
    return lines


def verdict(
    view: str,
    runs: list[dict[str, Any]],
    rps: dict[str, float],
    best: str,
    headline: list[list[str]],
) -> list[str]:
    """The advised profile against the best one for this view, in words and in the headline."""
    advice = ADVICE[view]
    advised = next((r["config"] for r in runs if r["profile"] == advice.subject), None)
    if advised is None or not rps[best]:
        return []
    share = rps[advised] / rps[best]
    best_profile = next(r["profile"] for r in runs if r["config"] == best)
    rounds = round_shares(runs, advised)
    held = sum(advice.met(each) for each in rounds)
    per_round = (
        f" Round by round (each against that round's best): "
        f"{', '.join(pct(each) for each in rounds)}; {advice.sign} {pct(advice.value)} in "
        f"{held} of {len(rounds)}."
    )
    if advice.met(share):
        text = (
            f"**Backs the advice:** `{advice.subject}` ({advised}) served {pct(share)} of the "
            f"best profile's throughput here ({advice.sign} {pct(advice.value)})"
            + (
                "; it was the best."
                if advised == best
                else f"; the best was `{best_profile}` ({best}), within the noise."
            )
            + per_round
        )
    else:
        text = (
            f"**Contradicts the advice:** `{advice.subject}` ({advised}) served only "
            f"{pct(share)} of `{best_profile}` ({best}) on this view (the claim: "
            f"{advice.sign} {pct(advice.value)}).{per_round} runtime/config.py is not changed by "
            "this run: the advice is for the maintainers to weigh against this figure."
        )
    headline.append(
        [
            f"12. {view} view, c={runs[0]['c']}: `{advice.subject}` profile / best profile",
            f"{advice.sign} {pct(advice.value)}",
            f"{num(rps[advised], 0)} / {num(rps[best], 0)} req/s (best: `{best_profile}`)",
            pct(share),
        ]
    )
    return [text, ""]


def round_shares(runs: list[dict[str, Any]], config: str) -> list[float]:
    """The configuration's throughput in each round as a share of that round's best."""
    shares = []
    for _, each in group(runs, "round").items():
        mine = [r["ok_rps"] or 0 for r in each if r["config"] == config]
        best = max(r["ok_rps"] or 0 for r in each)
        if mine and best:
            shares.append(mine[0] / best)
    return shares
