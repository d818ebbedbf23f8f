"""Scenario 15: placing an order (POST /api/orders) with its confirmation email through the
outbox, against the seeds' "under 100 ms"."""

import json
import secrets
import time
import urllib.request
from typing import Any

from bench import claims, incontainer, stack, web
from bench.order_load import OrderLoad
from bench.stats import combine, errors_text, group, ms, opening, rps_cell, table

STEP = "orders"
CLIENTS = 10
SECONDS = 8 if stack.QUICK else 20
# Seeded products (1,000,000 in stock each); the harness sets their stock higher still, so no
# order is refused for stock. "a product each": customer i orders PRODUCT_IDS[i], one order's
# latency; "one product": everyone orders the first, so the orders queue on its row lock
# (select_for_update in shop.services), what a best-seller sees.
PRODUCT_IDS = list(range(2, 2 + CLIENTS))
SHAPES = (("a product each", PRODUCT_IDS), ("one product", PRODUCT_IDS[:1]))
STOCK = 10_000_000
PREFIX = "bench-order-"
# How long the email worker gets, after the last round, to send every confirmation.
OUTBOX_WAIT_SECONDS = 180
LATENCY = claims.get("orders.latency_ms")


def send_json(
    path: str, body: dict[str, Any], headers: dict[str, str] | None = None, method: str = "POST"
) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the bench's own Nginx
        stack.BASE + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def outbox() -> dict[str, Any]:
    return dict(stack.in_web(incontainer.script("order_outbox"), PREFIX))


def measure(results: dict[str, Any]) -> None:
    """The default configuration with the email worker and the mail catcher running: logged-in
    customers post orders for one product line at c=10 for a bounded time, each round; then
    the outbox rows of their orders and the messages the mail catcher received are counted."""
    runs: list[dict[str, Any]] = []
    data: dict[str, Any] = {"clients": CLIENTS, "seconds": SECONDS, "runs": runs}
    results["orders"] = data
    web.switch_web(web.default_config())
    stack.compose(
        "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120", "mailcatcher", "worker-email"
    )  # fmt: skip
    staff = stack.compose(
        "exec", "-T", "web", "python3", "manage.py", "api_token", "bench-staff", "--create",
        "--staff",
    ).stdout.strip()  # fmt: skip
    staff_auth = {"Authorization": f"Bearer {staff}"}
    for product_id in PRODUCT_IDS:
        send_json(f"/api/products/{product_id}", {"stock": STOCK}, staff_auth, method="PATCH")
    password = secrets.token_urlsafe(16)
    names = stack.in_web(
        incontainer.script("order_customers"), PREFIX, str(CLIENTS), password
    )  # fmt: skip
    # Logged in as a client does: a token each, through Nginx (its login limit is lifted).
    tokens = [
        send_json("/api/auth/token", {"username": name, "password": password})["token"]
        for name in names
    ]
    data["before"] = outbox()
    orders = 0
    for round_ in range(1, stack.ROUNDS + 1):
        for label, product_ids in SHAPES:
            stack.log(f"round {round_}: {CLIENTS} customers placing orders, {label}")
            run = OrderLoad(stack.BASE, tokens=tokens, product_ids=product_ids).run(SECONDS)
            run.update(path="/api/orders", c=CLIENTS, seconds=SECONDS, label=label, round=round_)
            if not run["requests"]:
                raise RuntimeError(f"no order answered ({label}): the clients failed to start")
            orders += run["orders"]
            runs.append(run)
            summary = {k: run[k] for k in ("ok_rps", "ok", "failed")}
            stack.log(f"  POST /api/orders c={CLIENTS} {SECONDS}s: {summary}")
    data["orders"] = orders
    # Every confirmation sent (or given up on) before counting, within a bound.
    deadline = time.monotonic() + OUTBOX_WAIT_SECONDS
    waited = time.monotonic()
    while True:
        after = outbox()
        unsent = sum(n for state, n in after["outbox"].items() if state in ("pending", "sending"))
        if not unsent or time.monotonic() > deadline:
            break
        time.sleep(2)
    data["after"] = after
    data["outbox_wait_s"] = round(time.monotonic() - waited, 1)
    stack.log(f"  outbox: {after} for {orders} orders")


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(
        results, "orders", "15. Placing an order, confirmation email included", added_later=True
    )
    if data is None:
        return lines
    after = data.get("after") or {"outbox": {}, "delivered": 0}
    outbox_rows = after["outbox"]
    sent = outbox_rows.get("sent", 0)
    lines += [
        f"**Claim:** {claims.wording('orders')}.",
        "",
        f"`POST /api/orders` through Nginx, {data['clients']} logged-in customers (a bearer "
        "token each, from `POST /api/auth/token`), each posting one order after another (one "
        "product line, quantity 1, a new `Idempotency-Key` each) for "
        f"{data['seconds']} s per run, in the default web configuration with the email "
        "worker and the mail catcher running. Two shapes, alternated: each customer ordering "
        "a product of their own (one order's latency: the headline), and all of them "
        "ordering the same product (every order waits for the one before it on the "
        "product's row lock, `select_for_update` in shop/services.py: a best-seller). The "
        "products' stock is set far above what the run can sell, and Nginx's per-address "
        "write limit is lifted as for every scenario (`NGINX_RATE_WRITES`, bench/stack.py's "
        "compose_env; bench/compose.bench.yml is unchanged): neither is what is measured. "
        "Latency is the client's, from sending the request to reading the whole answer.",
        "",
    ]
    rows = []
    headline_done = False
    for (label,), runs in group(data["runs"], "label").items():
        combined = combine(runs)
        rows.append(
            [
                label,
                f"c={data['clients']}, {data['seconds']} s",
                rps_cell(combined),
                ms(combined["mean_s"]),
                f"**{ms(combined['p50_s'])}**",
                ms(combined["p95_s"]),
                ms(combined["p99_s"]),
                errors_text(combined),
                f"{LATENCY.sign} {LATENCY.value:g} ms",
            ]
        )
        if headline_done:
            continue
        # The first shape (a product each) is the seeds' case: one customer's order.
        headline_done = True
        for key, name in (("p50_s", "p50"), ("p95_s", "p95")):
            value = combined[key]
            if value is None:
                continue
            headline.append(
                [
                    f"15. POST /api/orders, {label}, c={data['clients']}, {name}",
                    f"{LATENCY.sign} {LATENCY.value:g} ms (the seeds)",
                    f"{ms(value)} ms, errors {errors_text(combined)}, emails sent {sent:,} of "
                    f"{data['orders']:,}",
                    "met" if LATENCY.met(value * 1000) else "**behind**",
                ]
            )
    lines += table(
        ["orders", "load", "ok req/s (each round)", "mean ms", "p50 ms", "p95 ms", "p99 ms",
         "errors", "goal"],
        rows,
    )  # fmt: skip
    lines += [
        f"**Through the outbox:** {data['orders']:,} orders placed; their confirmation rows "
        + ", ".join(f"{state} {n:,}" for state, n in sorted(outbox_rows.items()))
        + f" ({data['outbox_wait_s']} s after the last run); the mail catcher received "
        f"{after['delivered']:,} of them. Each order's row commits in the order's transaction; "
        "the email worker (Celery, queue `email`) sends it after the answer has gone.",
        "",
    ]
    return lines
