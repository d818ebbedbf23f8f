"""The product page's fan-out, against a real HTTP server in this process.

The server makes /price and /recommendations for one product wait for each other (a
rendezvous): both answer only if both requests are in flight at once, so the page shows the
upstream values only if the calls really run concurrently. No clock is read.
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from asgiref.sync import async_to_sync

from shop import selectors
from shop.schemas import ProductDetailOut
from tests.app.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


async def product_detail_get(*, product_id: int) -> dict | None:
    """The product page as the API answers it (ProductDetailOut shapes the selector's)."""
    detail = await selectors.product_detail_get(product_id=product_id)
    return None if detail is None else ProductDetailOut.from_orm(detail).model_dump()


@contextmanager
def served(
    routes: dict[str, Callable[[web.Request], Awaitable[web.Response]]],
) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """A real aiohttp server on a free local port, on its own loop and thread: (URL, loop)."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", loop
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@dataclass
class Upstream:
    url: str = ""
    arrived: dict[str, set[str]] = field(default_factory=dict)
    hang: bool = False


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    state = Upstream()
    events: dict[str, asyncio.Event] = {}
    release = asyncio.Event()

    async def rendezvous(request: web.Request) -> web.Response:
        kind = request.path.split("/")[1]
        product_id = request.match_info["product_id"]
        if state.hang:
            await release.wait()
            return web.json_response({"error": "too late"}, status=503)
        state.arrived.setdefault(product_id, set()).add(kind)
        event = events.setdefault(product_id, asyncio.Event())
        if state.arrived[product_id] >= {"price", "recommendations"}:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), timeout=5)
        except TimeoutError:
            return web.json_response({"error": "partner never came"}, status=503)
        if kind == "price":
            return web.json_response({"price": "42.00"})
        return web.json_response({"product_ids": [7, 8]})

    routes = {"/price/{product_id}": rendezvous, "/recommendations/{product_id}": rendezvous}
    with served(routes) as (url, loop):
        state.url = url
        yield state
        loop.call_soon_threadsafe(release.set)


@pytest.fixture
def pointed_at(settings, upstream):
    settings.PRICE_SERVICE_URL = settings.RECOMMENDATIONS_SERVICE_URL = upstream.url
    settings.PRICE_TIMEOUT = settings.RECOMMENDATIONS_TIMEOUT = 10
    return settings


def test_upstream_calls_run_concurrently(pointed_at, upstream):
    product = ProductFactory(price="5.00")
    detail = async_to_sync(product_detail_get)(product_id=product.pk)
    assert detail["price"] == "5.00"
    assert detail["pricing_service_price"] == "42.00"
    assert detail["recommendations"] == [7, 8]
    assert upstream.arrived[str(product.pk)] == {"price", "recommendations"}


def test_a_hanging_upstream_costs_its_timeout_then_falls_back(pointed_at, upstream):
    upstream.hang = True
    pointed_at.PRICE_TIMEOUT = pointed_at.RECOMMENDATIONS_TIMEOUT = 0.2
    product = ProductFactory(price="5.00", stock=3)
    detail = async_to_sync(product_detail_get)(product_id=product.pk)
    assert detail["price"] == "5.00"
    assert detail["pricing_service_price"] is None
    assert detail["recommendations"] == []
    assert detail["stock"] == 3


@dataclass
class Failing:
    url: str = ""
    calls: dict[str, int] = field(default_factory=dict)
    healthy: bool = False


@pytest.fixture
def failing() -> Iterator[Failing]:
    """A real HTTP server whose price and recommendations answer 503 (until healthy), counting
    the calls that reach it."""
    state = Failing()

    async def answer(request: web.Request) -> web.Response:
        kind = request.path.split("/")[1]
        state.calls[kind] = state.calls.get(kind, 0) + 1
        if not state.healthy:
            return web.json_response({"error": "down"}, status=503)
        if kind == "price":
            return web.json_response({"price": "42.00"})
        return web.json_response({"product_ids": [7]})

    routes = {"/price/{product_id}": answer, "/recommendations/{product_id}": answer}
    with served(routes) as (url, _):
        state.url = url
        yield state


@pytest.fixture
def breakers(settings, failing):
    from shop import upstream

    settings.PRICE_SERVICE_URL = settings.RECOMMENDATIONS_SERVICE_URL = failing.url
    settings.UPSTREAM_BREAKER_FAILURES = 3
    settings.UPSTREAM_BREAKER_SECONDS = 3600
    fresh = {name: upstream.Breaker(name) for name in upstream.breakers}
    saved = dict(upstream.breakers)
    upstream.breakers.update(fresh)
    yield fresh
    upstream.breakers.update(saved)


def pages(product_id: int, count: int) -> list[dict]:
    """`count` product pages at once, on one event loop: a worker under load."""

    async def many() -> list[dict]:
        results = await asyncio.gather(
            *(product_detail_get(product_id=product_id) for _ in range(count))
        )
        return [r for r in results if r is not None]

    return async_to_sync(many)()


def test_a_failing_upstream_is_skipped_after_repeated_failures_under_load(
    failing, breakers, settings
):
    product = ProductFactory(price="5.00")
    first = pages(product.pk, 3)  # three failures in a row open each service's breaker
    assert failing.calls == {"price": 3, "recommendations": 3}
    later = pages(product.pk, 50)  # under load, while open: no call goes out
    assert failing.calls == {"price": 3, "recommendations": 3}
    for page in first + later:  # every page still answered, from the fallbacks
        assert page["price"] == "5.00"
        assert page["pricing_service_price"] is None
        assert page["recommendations"] == []

    # Past the cool-down one call probes each service; a success closes the breaker.
    settings.UPSTREAM_BREAKER_SECONDS = 0
    failing.healthy = True
    for breaker in breakers.values():
        breaker.open_until = 0.0
    probed = pages(product.pk, 1)
    assert failing.calls == {"price": 4, "recommendations": 4}
    assert probed[0]["pricing_service_price"] == "42.00"
    pages(product.pk, 5)
    assert failing.calls == {"price": 9, "recommendations": 9}


def test_a_failed_probe_opens_the_breaker_again(failing, breakers, settings):
    product = ProductFactory(price="5.00")
    pages(product.pk, 3)
    for breaker in breakers.values():
        breaker.open_until = 0.0  # the cool-down is over
    pages(product.pk, 20)  # one of them probes, fails; the rest are skipped
    assert failing.calls == {"price": 4, "recommendations": 4}
