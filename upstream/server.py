"""Upstream stub: /price/{id}, /recommendations/{id} and /slow answer after UPSTREAM_LATENCY_MS
(overridable per request with ?latency_ms=) and fail with 503 at UPSTREAM_FAILURE_RATE
(?fail=1 forces a failure). Deterministic bodies, so tests can check what came through.

A test chooses how one product is answered: PUT /answers/{id} with one of ANSWERS as the body
(DELETE restores the normal answer). Each container keeps its own choices, in memory.
"""

import asyncio
import json
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


# Answers a test can choose per product, beside the normal one: broken bodies (each sent as
# application/json, as a misbehaving service or proxy would), a failure, a hang.
ANSWERS = ("truncated", "not_json", "wrong_types", "wrong_key", "oversized", "fail", "slow")
OVERSIZED_BYTES = 1024 * 1024
SLOW_SECONDS = 5
answers: dict[int, str] = {}


def _json(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/json")


async def _answer(request: web.Request, normal: dict[str, object], wrong: dict[str, object],
                  renamed: dict[str, object]) -> web.Response:
    answer = answers.get(int(request.match_info["product_id"]))
    if answer is None:
        await _delay_or_fail(request)
        return web.json_response(normal)
    if answer == "fail":
        raise web.HTTPServiceUnavailable(text='{"error": "injected failure"}')
    if answer == "slow":
        await asyncio.sleep(SLOW_SECONDS)
        return web.json_response(normal)
    if answer == "truncated":
        text = json.dumps(normal)
        return _json(text[: len(text) // 2])
    if answer == "not_json":
        return _json("<html><body>502 Bad Gateway</body></html>")
    if answer == "wrong_types":
        return web.json_response(wrong)
    if answer == "wrong_key":
        return web.json_response(renamed)
    return web.json_response({**normal, "padding": "x" * OVERSIZED_BYTES})  # oversized


async def price(request: web.Request) -> web.Response:
    product_id = int(request.match_info["product_id"])
    # A fixed "live" price per product: 10.00 + id cents, so tests know what to expect.
    normal = {"product_id": product_id, "price": f"{10 + product_id / 100:.2f}"}
    wrong = {"product_id": product_id, "price": 12.5}
    return await _answer(request, normal, wrong, {"product_id": product_id, "amount": "12.50"})


async def recommendations(request: web.Request) -> web.Response:
    product_id = int(request.match_info["product_id"])
    ids = [product_id + 1, product_id + 2, product_id + 3]
    wrong = {"product_ids": [str(i) for i in ids] + ["none"]}
    return await _answer(request, {"product_ids": ids}, wrong, {"recommended": ids})


async def answer_set(request: web.Request) -> web.Response:
    answer = (await request.text()).strip()
    if answer not in ANSWERS:
        raise web.HTTPBadRequest(text=f"choose one of {', '.join(ANSWERS)}")
    answers[int(request.match_info["product_id"])] = answer
    return web.json_response({"answer": answer})


async def answer_reset(request: web.Request) -> web.Response:
    answers.pop(int(request.match_info["product_id"]), None)
    return web.json_response({"answer": "normal"})


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
    app.router.add_put("/answers/{product_id:\\d+}", answer_set)
    app.router.add_delete("/answers/{product_id:\\d+}", answer_reset)
    # Many concurrent fan-outs: a deep accept queue; keep-alive longer than the clients' 30s.
    web.run_app(app, host="0.0.0.0", port=8080, backlog=4096, keepalive_timeout=75,  # noqa: S104
                access_log=None, print=None)


if __name__ == "__main__":
    main()
