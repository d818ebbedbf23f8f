"""Scenario 10: readers of the cached product list during a login flood."""

from typing import Any

from bench import claims, stack, web
from bench.login_flood import LoginFlood
from bench.stats import combine, errors_text, group, num, opening, ratio, table

STEP = "login_flood"
# The login flood (scenario 10): 10 clients, as the issue that asked for the bound measured.
LOGIN_FLOOD_CLIENTS = 10
LOGIN_FLOOD_SECONDS = 8 if stack.QUICK else 20
LOGIN_FLOOD_ROUNDS = 1 if stack.QUICK else 2
GOAL = claims.get("login_flood.readers_share")


def measure(results: dict[str, Any]) -> None:
    """Scenario 10: the cached product list with and without a login flood, alternated in one
    run in the default configuration: what the per-process hash gate (accounts/throttle.py)
    leaves the readers. Nginx's per-address login limit is lifted (compose_env), as if the
    flood came from many addresses."""
    runs: list[dict[str, Any]] = []
    results["login_flood"] = {
        "seconds": LOGIN_FLOOD_SECONDS, "clients": LOGIN_FLOOD_CLIENTS, "runs": runs
    }  # fmt: skip
    default = web.default_config()
    web.switch_web(default)
    path = "/api/products?page=1&page_size=20"
    stack.warm(path, n=500, c=50)
    for round_ in range(1, LOGIN_FLOOD_ROUNDS + 1):
        for state in ("off", "on"):
            stack.log(f"round {round_}: login flood {state}")
            if state == "off":
                run = stack.load(path, c=50, seconds=LOGIN_FLOOD_SECONDS, label=state, round=round_)
            else:
                with LoginFlood(stack.BASE, clients=LOGIN_FLOOD_CLIENTS) as flood:
                    run = stack.load(
                        path, c=50, seconds=LOGIN_FLOOD_SECONDS, label=state, round=round_
                    )
                run["logins"] = dict(flood.statuses)
                stack.log(f"  logins answered: {dict(flood.statuses)}")
            runs.append(run)


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "login_flood", "10. Readers during a login flood")
    if data is None:
        return lines
    by_state = {state: r for (state,), r in group(data["runs"], "label").items()}
    if "off" not in by_state or "on" not in by_state:
        return [*lines, "Not measured this run.", ""]
    off, on = combine(by_state["off"]), combine(by_state["on"])
    share = ratio(on["rps"], off["rps"])
    logins: dict[str, int] = {}
    for run in by_state["on"]:
        for status, count in run.get("logins", {}).items():
            logins[status] = logins.get(status, 0) + count
    seconds = data["seconds"] * len(by_state["on"])
    lines += [
        f"`GET /api/products` (cached) at c=50 for {data['seconds']} s, alone and while "
        f"{data['clients']} clients post logins for a new unknown username each (every one a "
        "password hash; Nginx's per-address limit lifted, as if from many addresses), "
        f"alternated. Goal: the readers keep {GOAL.compare} {GOAL.value:g} of their throughput "
        f"({GOAL.source}).",
        "",
    ]
    lines += table(
        ["req/s alone / during flood", "during / alone", "goal", "logins answered", "errors"],
        [
            [
                f"{num(off['rps'], 0)} / {num(on['rps'], 0)}",
                f"**{num(share, 2)}**",
                f"{GOAL.sign} {GOAL.value:g}",
                ", ".join(f"{k}: {v}" for k, v in sorted(logins.items()))
                + f" ({num(sum(logins.values()) / seconds if seconds else None, 1)}/s)",
                f"{errors_text(off)} / {errors_text(on)}",
            ]
        ],
    )
    headline.append(
        [
            "10. cached list during a login flood / alone",
            f"{GOAL.sign} {GOAL.value:g}",
            f"{num(on['rps'], 0)} / {num(off['rps'], 0)} req/s",
            f"{num(share, 2)}",
        ]
    )
    return lines
