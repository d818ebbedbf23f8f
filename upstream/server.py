"""Upstream stub: /price/{id}, /recommendations/{id} and /slow answer after UPSTREAM_LATENCY_MS
(overridable per request with ?latency_ms=) and fail with 503 at UPSTREAM_FAILURE_RATE
(?fail=1 forces a failure). Deterministic bodies, so tests can check what came through."""

import asyncio
import os
import random

from aiohttp import web

LATENCY_MS = float(os.environ.get("UPSTREAM_LATENCY_MS", "50"))
FAILURE_RATE = float(os.environ.get("UPSTREAM_FAILURE_RATE", "0"))


async def _delay_or_fail(request: web.Request) -> None:
    latency = float(request.query.get("latency_ms", LATENCY_MS))
    await asyncio.sleep(latency / 1000)
    if request.query.get("fail") == "1" or random.random() < FAILURE_RATE:  # noqa: S311
        raise web.HTTPServiceUnavailable(text='{"error": "injected failure"}')


async def price(request: web.Request) -> web.Response:
    await _delay_or_fail(request)
    product_id = int(request.match_info["product_id"])
    # A fixed "live" price per product: 10.00 + id cents, so tests know what to expect.
    return web.json_response({"product_id": product_id, "price": f"{10 + product_id / 100:.2f}"})


async def recommendations(request: web.Request) -> web.Response:
    await _delay_or_fail(request)
    product_id = int(request.match_info["product_id"])
    return web.json_response({"product_ids": [product_id + 1, product_id + 2, product_id + 3]})


async def slow(request: web.Request) -> web.Response:
    await _delay_or_fail(request)
    return web.json_response({"ok": True})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/price/{product_id:\\d+}", price)
    app.router.add_get("/recommendations/{product_id:\\d+}", recommendations)
    app.router.add_get("/slow", slow)
    app.router.add_get("/healthz", healthz)
    # Many concurrent fan-outs: a deep accept queue; keep-alive longer than the clients' 30s.
    web.run_app(app, host="0.0.0.0", port=8080, backlog=4096, keepalive_timeout=75,  # noqa: S104
                access_log=None, print=None)


if __name__ == "__main__":
    main()
