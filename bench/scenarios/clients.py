"""Scenario 2: the fan-out's HTTP client, the seed's httpx ways against the app's aiohttp
session."""

from typing import Any

from bench import claims, stack, web
from bench.scenarios import fanout
from bench.stats import combine, errors_text, group, ms, num, opening, pct, ratio, rps_cell, table

STEP = "http_client"
# Scenario 2's runs: the httpx clients manage ~90 req/s, so quick mode sends fewer.
N_CLIENT = 300 if stack.QUICK else fanout.N_ASYNC
# The claimed req/s at c=100 per client, and the ratios of the shared aiohttp session to each
# httpx way (bench/claims.toml), by the client they are about.
CLIENT_CLAIM_RPS = {
    claim.subject: claim
    for claim in (
        claims.get("clients.shared_httpx_rps"),
        claims.get("clients.httpx_per_request_rps"),
        claims.get("clients.shared_aiohttp_rps"),
    )
}
CLIENT_CLAIM_RATIOS = (
    claims.get("clients.aiohttp_over_shared_httpx"),
    claims.get("clients.aiohttp_over_httpx_per_request"),
)
APP_CLIENT = "shared aiohttp session"
SHARED_HTTPX, HTTPX_PER_REQUEST = "shared httpx client", "httpx client per request"


# The clients: the first two are the seed's (httpx; per request is its code), the third the
# app's own (shop/upstream.py), the fourth that one made per request.
HTTP_CLIENTS = (
    ("shared httpx client", "/bench/fanout/async-httpx"),
    ("httpx client per request", "/bench/fanout/async-httpx-new-client"),
    ("shared aiohttp session", "/bench/fanout/async"),
    ("aiohttp session per request", "/bench/fanout/async-new-client"),
)[: 3 if stack.QUICK else 4]  # quick: the three the claims name


def measure(results: dict[str, Any]) -> None:
    """Scenario 2: the four clients in the default web configuration, same view shape and load
    (c=100, n=1000), taking turns (A, B, C, D, A, B, ...) so a burst of load from elsewhere
    hits every client alike."""
    if stack.CONFIGS and STEP not in stack.ONLY:
        return  # BENCH_CONFIGS alone: scenario 1 only
    runs: list[dict[str, Any]] = []
    rotations = stack.ROUNDS * stack.ALTERNATIONS
    results["http_client"] = {"rotations": rotations, "runs": runs}
    default = web.default_config()
    stack.log(f"http clients: web as {default['name']}")
    web.switch_web(default)
    for _, path in HTTP_CLIENTS:
        stack.warm(path)
    for rotation in range(1, rotations + 1):
        for label, path in HTTP_CLIENTS:
            runs.append(
                stack.load(
                    path, c=100, n=N_CLIENT, label=label, config=default["name"], round=rotation
                )
            )


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "http_client", "2. The fan-out's HTTP client")
    if data is None:
        return lines
    lines += [
        f"**Claim:** {claims.wording('clients')}. Same three concurrent 300 ms calls, c=100, "
        "n=1000 per run, "
        "in the default web configuration, the clients taking turns (A, B, C, D, A, B...). "
        "Views: `/bench/fanout/async-httpx` (one `httpx.AsyncClient` per worker's event loop, "
        "httpx's default pool limits), `/bench/fanout/async-httpx-new-client` (a new "
        "`httpx.AsyncClient` per request, the seed's code), `/bench/fanout/async` (the app's "
        "shared aiohttp session, shop/upstream.py) and `/bench/fanout/async-new-client` (an "
        "aiohttp session per request). httpx is installed in the bench's web image only "
        "(Dockerfile target `bench`).",
        "",
    ]
    rows = []
    figures: dict[str, float | None] = {}
    for (label,), runs in group(data["runs"], "label").items():
        combined = combine(runs)
        figures[label] = combined["rps"]
        claim = CLIENT_CLAIM_RPS.get(label)
        rows.append(
            [
                label,
                "-" if claim is None else claimed_rps(label),
                rps_cell(combined),
                pct(ratio(combined["rps"], claim and claim.value)),
                ms(combined["mean_s"]),
                ms(combined["p50_s"]),
                ms(combined["p99_s"]),
                errors_text(combined),
            ]
        )
        if claim is not None:
            headline.append(
                [
                    f"2. fan-out client: {label}, c=100",
                    f"{claimed_rps(label)} req/s",
                    f"{num(combined['rps'], 0)} req/s",
                    pct(ratio(combined["rps"], claim and claim.value)),
                ]
            )
    lines += table(
        [
            "client",
            "claimed req/s",
            "ok req/s (each run)",
            "measured / claimed",
            "mean ms",
            "p50 ms",
            "p99 ms",
            "errors",
        ],
        rows,
    )
    parts = []
    for claimed in CLIENT_CLAIM_RATIOS:
        other = claimed.subject
        measured = ratio(figures.get(APP_CLIENT), figures.get(other))
        if measured is None:
            continue
        said = f"{claimed.sign}{claimed.value:.0f}x"
        parts.append(f"{APP_CLIENT} / {other}: **{measured:.2f}x** (claimed {said})")
        headline.append([f"2. {APP_CLIENT} / {other}", said, f"{measured:.2f}x", "-"])
    per_request = ratio(figures.get(APP_CLIENT), figures.get("aiohttp session per request"))
    if per_request is not None:
        parts.append(f"{APP_CLIENT} / aiohttp session per request: **{per_request:.2f}x**")
    if parts:
        lines += ["Ratios: " + "; ".join(parts) + ".", ""]
    lines += client_verdict(figures)
    return lines


def claimed_rps(label: str) -> str:
    claim = CLIENT_CLAIM_RPS[label]
    return f"{claim.sign}{claim.value:.0f}"


def client_verdict(figures: dict[str, float | None]) -> list[str]:
    """Where the measured clients stand against the claimed figures, said plainly."""
    app, app_claim = figures.get(APP_CLIENT), CLIENT_CLAIM_RPS[APP_CLIENT]
    shared, fresh = figures.get(SHARED_HTTPX), figures.get(HTTPX_PER_REQUEST)
    measured = [value for value in figures.values() if value]
    lines = []
    standing: dict[str, list[str]] = {"behind": [], "ahead": [], "met": []}
    for label, claim in CLIENT_CLAIM_RPS.items():
        if figures.get(label) is not None:
            standing[claim.standing(figures[label] or 0)].append(
                f"{label} {num(figures[label], 0)} vs {claimed_rps(label)}"
            )
    behind, ahead = standing["behind"], standing["ahead"]
    if behind:
        lines.append(f"**Behind the claimed figures:** {'; '.join(behind)} req/s.")
    if ahead:
        lines.append(f"**Ahead of them:** {'; '.join(ahead)} req/s.")
    if lines:
        lines.append("")
    lines += [
        "**Why.** Every client waits the same 300 ms per call, so what separates them is the "
        "CPU each request costs on two shared cores. The app's aiohttp session is held back by "
        "what holds back scenario 1's default row (Nginx, Django, the stand-ins and hey on the "
        "same cores)"
        + (
            f": {pct(ratio(app, app_claim.value))} of the {claimed_rps(APP_CLIENT)} claimed."
            if app
            else "."
        )
        + " A new httpx client per request"
        + (" is the dearest way here:" if fresh and fresh == min(measured) else " costs CPU:")
        + " httpx builds an SSL context (loading certifi's CA bundle) for every client it "
        "creates, even for plain-HTTP calls (about 7 ms of CPU per client, timed in the bench "
        "image when this harness was written), and each request opens three new connections.",
    ]
    if shared and fresh:
        lines[-1] += f" A shared httpx client ({num(shared, 0)} req/s) " + (
            f"beats one per request, unlike the claim ({claimed_rps(SHARED_HTTPX)} vs "
            f"{claimed_rps(HTTPX_PER_REQUEST)} req/s); this run does not reproduce the earlier "
            f"{claimed_rps(SHARED_HTTPX)} req/s, whose set-up is not recorded. Its pool has "
            "httpx's default limits (100 connections, 20 kept alive) for the 300 calls in "
            "flight at c=100, so calls queue for a connection and connections beyond 20 idle "
            "ones are closed and reopened; and it costs more CPU per call than aiohttp "
            "(httpcore, anyio)."
            if shared > fresh
            else "is behind one per request, as claimed: its pool has httpx's default limits "
            "(100 connections, 20 kept alive) for the 300 calls in flight at c=100, so calls "
            "queue for a connection and connections beyond 20 idle ones are closed and reopened."
        )
    lines += [
        "",
        "Real networks (TLS, distance) make every new connection dearer and favour a shared "
        "client more than this stack can show.",
        "",
    ]
    return lines
