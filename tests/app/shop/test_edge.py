"""GET /api/products through runtime.edge (config/asgi.py): a hit is answered before Django
with the bytes and headers Django answers, and a write is seen by the next read all the same."""

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from core import metrics
from core.aio import loop_clients_close
from runtime.edge import Edge
from shop import cache
from shop.cache import EDGE_ROUTES, product_page_query
from tests.app.accounts.factories import UserFactory, bearer
from tests.app.conftest import cache_at
from tests.app.runtime.asgi_scope import Answer, answer, scope
from tests.app.runtime.test_edge import VOLATILE, Counted, stable
from tests.app.shop.factories import ProductFactory
from tests.app.shop.test_apis import _commands, rename

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


async def _get(app: Any, query: bytes = b"") -> Answer:
    return await answer(app, {**scope("/api/products"), "query_string": query})


def on_one_loop(app: Any, *queries: bytes) -> list[Answer]:
    """The requests one after another on one event loop, as a worker serves them."""

    async def run() -> list[Answer]:
        answers = [await _get(app, query) for query in queries]
        await loop_clients_close()
        await sync_to_async(connections.close_all)()
        return answers

    return asyncio.run(run())


@pytest.fixture
def staff():
    return bearer(UserFactory(is_staff=True))


@pytest.fixture
def django_app():
    app = Counted()
    yield app
    app.handler.executors.close()


@pytest.fixture
def app(django_app, redis_settings) -> Edge:
    return Edge(django_app, EDGE_ROUTES)


def test_a_hit_is_djangos_answer_without_django_in_one_round_trip(app, django_app, redis_client):
    ProductFactory.create_batch(3)

    async def run() -> tuple[Answer, Answer, dict[str, int]]:
        miss, hit = await _get(app, b"page_size=10"), await _get(app, b"page_size=10")
        before = _commands(redis_client)  # the loop's connection is open: counted from here
        await _get(app, b"page_size=10")
        after = _commands(redis_client)
        await loop_clients_close()
        await sync_to_async(connections.close_all)()
        return miss, hit, {k: n - before.get(k, 0) for k, n in after.items()}

    miss, hit, spent = asyncio.run(run())
    assert django_app.calls == 1
    assert hit[0] == miss[0] == 200
    assert hit[2] == miss[2]
    assert json.loads(hit[2])["count"] == 3
    assert stable(hit[1]) == stable(miss[1])
    assert {k for k, _ in hit[1]} >= VOLATILE
    assert {k: n for k, n in spent.items() if n and k != "info"} == {"mget": 1}


def test_a_write_is_seen_by_the_next_read_through_the_edge(app, django_app, client, staff):
    product = ProductFactory(name="Old name")
    _, cached = on_one_loop(app, b"", b"")
    assert json.loads(cached[2])["items"][0]["name"] == "Old name"
    assert django_app.calls == 1
    assert rename(client, staff, product.pk, "New name").status_code == 200
    (after,) = on_one_loop(app, b"")
    assert json.loads(after[2])["items"][0]["name"] == "New name"


def test_while_its_bump_is_pending_the_edge_leaves_the_page_to_django(app, django_app, monkeypatch):
    # This process wrote and its bump has not landed: Django's view reads the primary.
    ProductFactory()
    on_one_loop(app, b"", b"")
    assert django_app.calls == 1
    monkeypatch.setattr(cache, "_invalidation", SimpleNamespace(pending=True))
    on_one_loop(app, b"")
    assert django_app.calls == 2


def test_a_hung_cache_costs_a_request_one_read_counted_in_its_duration(
    django_app, settings, blackhole
):
    # The edge's read misses (its timeout); the view it hands the request to uses that read,
    # not a second one, and the request's duration counts from the edge.
    cache_at(settings, blackhole.port)
    settings.SHOP_REDIS_TIMEOUT = 0.3
    ProductFactory(name="Lamp")
    app = Edge(django_app, EDGE_ROUTES)
    app.learned[("/api/products", False)] = []  # as if Django had answered once already
    ((status, headers, body),) = on_one_loop(app, b"")
    assert status == 200
    assert json.loads(body)["items"][0]["name"] == "Lamp"
    assert django_app.calls == 1
    assert len(blackhole.accepted) == 1
    assert float(dict(headers)[b"x-request-duration"]) >= 0.3


@pytest.mark.parametrize(("edge_cache", "django_calls"), [(True, 1), (False, 2)])
def test_edge_cache_false_composes_no_edge_and_django_answers_the_hit(
    django_app, settings, redis_settings, edge_cache, django_calls
):
    # config/asgi.py's composition: EDGE_CACHE=false is the way back to Django for every page.
    from config.asgi import _served

    settings.EDGE_CACHE = edge_cache
    ProductFactory()
    hits = metrics.CACHE_GETS.labels("hit")
    before = hits._value.get()
    first, cached = on_one_loop(_served(django_app), b"", b"")  # a miss, stored; then a hit
    assert hits._value.get() == before + 1
    assert cached[2] == first[2]
    assert django_app.calls == django_calls


def test_a_page_size_the_api_refuses_is_still_its_400(app, django_app):
    ProductFactory()
    _, _, (status, _, body) = on_one_loop(app, b"", b"", b"page_size=30")
    assert status == 400
    assert "page_size" in body.decode()
    assert django_app.calls == 2


@pytest.mark.parametrize(
    ("query", "page"),
    [
        (b"", {"page": 1, "page_size": 20, "hot": None}),
        (b"page=2", {"page": 2, "page_size": 20, "hot": None}),
        (b"page_size=50&hot=true", {"page": 1, "page_size": 50, "hot": True}),
        (b"hot=false&page=10000", {"page": 10000, "page_size": 20, "hot": False}),
    ],
)
def test_the_edge_reads_plain_queries(query, page):
    assert product_page_query(query) == page


@pytest.mark.parametrize(
    "query",
    [
        b"page=0",
        b"page=01",
        b"page=1_0",
        b"page=%31",
        b"page=10001",
        b"page=-1",
        b"page_size=30",
        b"hot=True",
        b"hot=1",
        b"page=1&page=2",
        b"page",
        b"page=",
        b"other=1",
        b"page=1&",
    ],
)
def test_anything_else_is_left_to_the_api(query):
    # ProductQuery may accept some of these (page=01) and refuses others with a 400.
    assert product_page_query(query) is None
