"""The fan-out of bench_endpoints.views with httpx instead of aiohttp, for scenario 2 of
`make bench`: the same three concurrent calls, through

- fanout_async_httpx: one httpx.AsyncClient per event loop (a Uvicorn worker has one loop for its
  life), with httpx's default pool limits, as a user who shares a client would write it;
- fanout_async_httpx_new_client: a new httpx.AsyncClient per request (the seed's code).

httpx is only in the bench image (Dockerfile target "bench"); bench_endpoints.urls routes these
views only when it is installed, and bench_endpoints.views imports this module on first use.
"""

import asyncio
import weakref
from typing import Any

import httpx
from django.http import HttpRequest, JsonResponse

from bench_endpoints.views import TIMEOUT_SECONDS, answer, request_latency, upstream_urls

# One client per running loop: a client's pooled connections belong to the loop that opened them.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = (
    weakref.WeakKeyDictionary()
)


def _shared_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
    return client


async def _get_with(client: httpx.AsyncClient, url: str) -> Any | None:
    try:
        response = await client.get(url)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


async def fanout_async_httpx(request: HttpRequest) -> JsonResponse:
    client = _shared_client()
    urls = upstream_urls(request_latency(request))
    results = await asyncio.gather(*(_get_with(client, url) for url in urls))
    body, status = answer(list(results))
    return JsonResponse(body, status=status)


async def fanout_async_httpx_new_client(request: HttpRequest) -> JsonResponse:
    urls = upstream_urls(request_latency(request))
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        results = await asyncio.gather(*(_get_with(client, url) for url in urls))
    body, status = answer(list(results))
    return JsonResponse(body, status=status)
