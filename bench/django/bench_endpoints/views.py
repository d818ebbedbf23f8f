"""One page that makes three calls to the upstream stand-ins' /slow endpoint (300 ms each by
default), written three ways so `make bench` can compare worker classes and HTTP clients on
the same work:

- fanout_async: concurrent (asyncio.gather) through the worker's shared aiohttp session, the
  production client of shop/upstream.py.
- fanout_async_new_client: concurrent, but a new aiohttp ClientSession per request (no pooled
  connections: a TCP handshake per call, a connector built and torn down per request).
- fanout_async_httpx, fanout_async_httpx_new_client (httpx_views.py, bench image only): the
  same with a shared httpx client and with a new one per request (the seed's code).
- fanout_sequential: the same calls through the same shared session as fanout_async, awaited
  one after another: scenario 11 holds the two against each other, one request at a time.
- fanout_sync: sequential, with the standard library's blocking urllib (what a sync or gthread
  worker runs; a new connection per call, as urllib has no pool). Under Gunicorn's gevent
  worker the same code yields to other requests while it waits (gevent patches the sockets).

Scenario 12's two views, plain sync views so that every worker model runs the same code:
cpu_bound (a fixed amount of pure-Python work, no I/O) and mixed (a fifth of that work, the
product page's database read and one upstream call).

Each answers 200 when all three calls succeeded and 502 otherwise, so the load generator
counts a failed fan-out as an error.

product_list_uncached: GET /api/products's page without its cache (the cached list's
scenario holds the two against each other).
"""

import asyncio
import json
import urllib.request
from typing import Any

import aiohttp
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from shop.schemas import ProductPage
from shop.selectors import product_get, product_list
from shop.upstream import fetch_json

DEFAULT_LATENCY_MS = 300
# Generous: the bench measures queueing, so a call waiting for a pooled connection must not be
# cut short and turned into an error by the client itself.
TIMEOUT_SECONDS = 10.0


def upstream_urls(latency_ms: int = DEFAULT_LATENCY_MS) -> list[str]:
    """The three calls: price, recommendations, price again (both stand-ins share the load)."""
    bases = [
        settings.PRICE_SERVICE_URL,
        settings.RECOMMENDATIONS_SERVICE_URL,
        settings.PRICE_SERVICE_URL,
    ]
    return [f"{base}/slow?latency_ms={latency_ms}" for base in bases]


def request_latency(request: HttpRequest) -> int:
    try:
        value = int(request.GET.get("latency_ms", DEFAULT_LATENCY_MS))
    except ValueError:
        value = DEFAULT_LATENCY_MS
    return max(0, min(value, 5000))


def answer(results: list[Any]) -> tuple[dict[str, int], int]:
    ok = sum(result is not None for result in results)
    return {"calls": len(results), "ok": ok}, 200 if ok == len(results) else 502


async def fanout_async(request: HttpRequest) -> JsonResponse:
    urls = upstream_urls(request_latency(request))
    results = await asyncio.gather(*(fetch_json(url, timeout=TIMEOUT_SECONDS) for url in urls))
    body, status = answer(list(results))
    return JsonResponse(body, status=status)


async def fanout_sequential(request: HttpRequest) -> JsonResponse:
    urls = upstream_urls(request_latency(request))
    results = [await fetch_json(url, timeout=TIMEOUT_SECONDS) for url in urls]
    body, status = answer(results)
    return JsonResponse(body, status=status)


async def _get_with(session: aiohttp.ClientSession, url: str) -> Any | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as r:
            return await r.json() if r.status == 200 else None
    except (TimeoutError, aiohttp.ClientError):
        return None


async def fanout_async_new_client(request: HttpRequest) -> JsonResponse:
    urls = upstream_urls(request_latency(request))
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(_get_with(session, url) for url in urls))
    body, status = answer(list(results))
    return JsonResponse(body, status=status)


def _get_blocking(url: str) -> Any | None:
    try:
        # The URL comes from settings, never from the request.
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):
        return None


def fanout_sync(request: HttpRequest) -> JsonResponse:
    results = [_get_blocking(url) for url in upstream_urls(request_latency(request))]
    body, status = answer(results)
    return JsonResponse(body, status=status)


# Scenario 12's work: fixed, so every worker model is given the same amount per request.
CPU_ITERATIONS = 600_000
MIXED_ITERATIONS = CPU_ITERATIONS // 5
MIXED_PRODUCT_ID = 1
MIXED_UPSTREAM_MS = 50


def _compute(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def cpu_bound(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"work": _compute(CPU_ITERATIONS)})


def mixed(request: HttpRequest) -> JsonResponse:
    work = _compute(MIXED_ITERATIONS)
    product = product_get(product_id=MIXED_PRODUCT_ID)
    upstream = _get_blocking(upstream_urls(MIXED_UPSTREAM_MS)[0])
    ok = product is not None and upstream is not None
    return JsonResponse({"work": work, "ok": ok}, status=200 if ok else 502)


# Scenario 2's httpx views (httpx_views.py, bench image only), imported by the first request that
# uses one: the workers of every other scenario never load httpx, so it cannot move their memory.
async def fanout_async_httpx(request: HttpRequest) -> JsonResponse:
    from bench_endpoints import httpx_views

    return await httpx_views.fanout_async_httpx(request)


async def fanout_async_httpx_new_client(request: HttpRequest) -> JsonResponse:
    from bench_endpoints import httpx_views

    return await httpx_views.fanout_async_httpx_new_client(request)


def product_list_uncached(request: HttpRequest) -> HttpResponse:
    """What GET /api/products does on a cache miss, on every request: the same selector (the
    replica) and the same ProductPage shaping, with no Redis. The cached list's default page."""
    rows = product_list(page=1, page_size=20)
    body = ProductPage.from_orm(rows).model_dump_json()
    return HttpResponse(body, content_type="application/json")
