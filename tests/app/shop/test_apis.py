"""The shop API through Django's test client: auth, validation, ownership, caching."""

import asyncio
import json
import time

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from shop.models import Order, Product
from tests.app.accounts.factories import UserFactory, bearer
from tests.app.conftest import cache_at
from tests.app.shop.factories import OrderItemFactory, ProductFactory
from tests.support import wait_until

# Committed transactions: the replica alias is a second connection, which cannot see rows
# inside another connection's open test transaction.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def held_version(redis_client) -> int:
    """The list's version, started (as a miss starts it) when none is held yet."""
    from django.core.cache import cache

    from shop.cache import PRODUCTS_VERSION_KEY

    key = cache.make_key(PRODUCTS_VERSION_KEY)
    redis_client.set(key, time.time_ns(), nx=True)
    return int(redis_client.get(key))


def post(client, path, body, **headers):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **headers)


@pytest.fixture
def staff():
    return bearer(UserFactory(is_staff=True))


@pytest.fixture
def customer():
    user = UserFactory()
    return user, bearer(user)


def test_staff_create_then_anyone_reads(client, staff):
    response = post(
        client, "/api/products", {"name": "Lamp", "price": "19.90", "stock": 2}, **staff
    )
    assert response.status_code == 201
    assert response.json()["price"] == "19.90"
    listing = client.get("/api/products")
    assert listing.json()["items"][0]["name"] == "Lamp"


def test_product_writes_need_staff(client, customer):
    _, headers = customer
    body = {"name": "Lamp", "price": "19.90", "stock": 2}
    assert post(client, "/api/products", body).status_code == 401
    assert post(client, "/api/products", body, **headers).status_code == 403
    assert Product.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": "1.00", "stock": 1}, "name"),
        ({"name": "x", "price": "-1.00", "stock": 1}, "price"),
        ({"name": "x", "price": "abc", "stock": 1}, "price"),
        ({"name": "x", "price": "1.001", "stock": 1}, "price"),
        ({"name": "x", "price": 1.5, "stock": 1}, "price"),
        ({"name": "x", "price": "", "stock": 1}, "price"),
        ({"name": "nul\u0000byte", "price": "1.00", "stock": 1}, "name"),
        ({"name": "x", "price": "1.00", "stock": -5}, "stock"),
        ({"name": "x", "price": "1.00", "stock": "many"}, "stock"),
        ({"name": "x", "price": "1.00", "stock": "5"}, "stock"),
        ({"name": "x", "price": "1.00", "stock": 1, "hot": 0}, "hot"),
        ({"name": "x" * 201, "price": "1.00", "stock": 1}, "name"),
    ],
)
def test_invalid_fields_are_named_and_nothing_is_written(client, staff, body, field):
    response = post(client, "/api/products", body, **staff)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert Product.objects.count() == 0


@pytest.mark.parametrize("body", ['{"name": ', b"\xff\xfe{}", "not json"])
def test_malformed_json_is_a_400(client, staff, body):
    response = post(client, "/api/products", body, **staff)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("query", ["page=0", "page_size=101", "page=abc", "page=10001"])
def test_out_of_range_pages_are_a_400_naming_the_parameter(client, query):
    response = client.get(f"/api/products?{query}")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) & {"page", "page_size"}


@pytest.mark.parametrize("size", [1, 7, 19, 21, 99])
def test_a_product_page_size_outside_the_canonical_ones_is_a_400_naming_them(client, size):
    # Each page size is its own set of cache keys: only a few exist (core.schemas.PAGE_SIZES).
    response = client.get(f"/api/products?page_size={size}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == {
        "page_size": ["Value error, page_size must be one of 10, 20, 50, 100"]
    }


@pytest.mark.parametrize("size", [10, 20, 50, 100])
def test_every_canonical_product_page_size_is_served(client, size):
    ProductFactory.create_batch(3)
    response = client.get(f"/api/products?page_size={size}")
    assert response.status_code == 200
    assert response.json()["page_size"] == size


def test_the_openapi_schema_of_a_product_patch_allows_no_null(client):
    """As the PATCH refuses a null (test_a_field_patched_to_null_is_a_400_naming_it_...): a
    client generated from the schema never sends one."""
    document = client.get("/api/openapi.json").json()
    body = document["paths"]["/api/products/{product_id}"]["patch"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    fields = schema["properties"]
    assert set(fields) == {"name", "description", "price", "stock", "stock_delta", "hot"}
    assert "required" not in schema
    assert schema["additionalProperties"] is False
    for name, field in fields.items():
        assert "null" not in json.dumps(field), (name, field)
        assert "anyOf" not in field, (name, field)
    assert fields["hot"]["type"] == "boolean"
    assert fields["stock"]["type"] == "integer"
    assert fields["stock"]["description"].startswith("Sets an absolute count")
    assert fields["name"]["pattern"]


def test_the_openapi_schema_lists_the_canonical_product_page_sizes(client):
    operation = client.get("/api/openapi.json").json()["paths"]["/api/products"]["get"]
    [size] = [p for p in operation["parameters"] if p["name"] == "page_size"]
    assert size["schema"]["enum"] == [10, 20, 50, 100]


def rename(client, staff, product_id: int, name: str):
    return client.patch(
        f"/api/products/{product_id}",
        data=json.dumps({"name": name}),
        content_type="application/json",
        **staff,
    )


def test_product_list_is_cached_and_invalidated_by_writes(client, staff, redis_settings):
    ProductFactory(name="Old name")
    with CaptureQueriesContext(connections["replica"]) as first:
        client.get("/api/products")
    with CaptureQueriesContext(connections["replica"]) as second:
        assert client.get("/api/products").json()["items"][0]["name"] == "Old name"
    assert len(first) > 0
    assert len(second) == 0  # served from Redis

    product_id = Product.objects.get().pk
    assert rename(client, staff, product_id, "New name").status_code == 200
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"


def test_a_cached_page_is_the_misses_bytes_stored_with_the_version(
    client, redis_settings, redis_client
):
    # The page is stored as the API rendered it, after its version: a hit answers those bytes
    # as they are, with no model, validation or rendering.
    from django.core.cache import cache

    from shop.cache import product_page_key

    product = ProductFactory(name="Lamp", description="Bright", price="19.90", stock=3)
    miss = client.get("/api/products?page_size=10")
    assert miss.json() == {
        "items": [
            {
                "id": product.pk,
                "name": "Lamp",
                "description": "Bright",
                "price": "19.90",
                "stock": 3,
                "hot": False,
            }
        ],
        "page": 1,
        "page_size": 10,
        "count": 1,
    }
    key = product_page_key(hot=None, page=1, page_size=10)
    stored = cache.client.get_client().get(key)
    assert stored == b"%d\n" % held_version(redis_client) + miss.content
    hit = client.get("/api/products?page_size=10")
    assert (hit.status_code, hit["Content-Type"]) == (200, miss["Content-Type"])
    assert hit.content == miss.content


def _commands(redis_client) -> dict[str, int]:
    stats = redis_client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


def test_a_hit_is_one_round_trip_and_nothing_else(redis_settings, redis_client):
    # On the worker's event loop (the main thread's, as under Uvicorn), whose Redis connection
    # the hit reuses: Django's sync test client would run each request in a loop of its own.
    # A fill would read the version and the write mark and store the page: none of it happens.
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from core.aio import loop_clients_close

    ProductFactory.create_batch(3)

    async def scenario() -> tuple[dict[str, int], dict[str, int], bytes, bytes]:
        client = AsyncClient()
        miss = await client.get("/api/products?page_size=20")
        before = _commands(redis_client)
        hit = await client.get("/api/products?page_size=20")
        after = _commands(redis_client)
        await loop_clients_close()
        await sync_to_async(connections.close_all)()  # the fill's thread's connections
        return before, after, miss.content, hit.content

    before, after, miss, hit = asyncio.run(scenario())
    spent = {name: n - before.get(name, 0) for name, n in after.items()}
    # INFO itself is counted once, for the second snapshot.
    assert {name: n for name, n in spent.items() if n and name != "info"} == {"mget": 1}
    assert hit == miss
    assert json.loads(hit)["count"] == 3


def test_a_miss_is_its_read_and_one_store(redis_settings, redis_client):
    # The version and the write mark come with the read's MGET: the fill neither reads them
    # again nor asks whether a write happened, it only stores the page.
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from core.aio import loop_clients_close

    ProductFactory.create_batch(3)

    async def scenario() -> tuple[dict[str, int], dict[str, int], bytes]:
        client = AsyncClient()
        await client.get("/api/products?page_size=20")  # the version starts here, once
        before = _commands(redis_client)
        miss = await client.get("/api/products?page_size=10")
        after = _commands(redis_client)
        await loop_clients_close()
        await sync_to_async(connections.close_all)()
        return before, after, miss.content

    before, after, miss = asyncio.run(scenario())
    spent = {name: n - before.get(name, 0) for name, n in after.items()}
    assert {name: n for name, n in spent.items() if n and name != "info"} == {"mget": 1, "set": 1}
    assert json.loads(miss)["count"] == 3


def test_a_page_stored_with_another_version_is_a_miss(client, redis_settings, redis_client):
    # A filler that read the version before a write and stored after it leaves a page with the
    # old version: never answered, whatever its TTL.
    from shop.cache import product_page_key

    product = ProductFactory(name="Right")
    key = product_page_key(hot=None, page=1, page_size=10)
    stale = json.dumps({"items": [], "page": 1, "page_size": 10, "count": 0}).encode()
    redis_client.set(key, b"%d\n" % (held_version(redis_client) - 1) + stale)
    assert client.get("/api/products?page_size=10").json()["items"][0]["id"] == product.pk


@pytest.mark.parametrize("garbage", [b"abc", b"1.5", b"-7", b"99999999999999999999"])
def test_a_version_that_is_not_a_whole_number_is_replaced(
    client, staff, redis_settings, redis_client, garbage
):
    # Written by hand or by another program: reads and the write after its commit still
    # answer, and the write is on the next read.
    from django.core.cache import cache

    from shop.cache import PRODUCTS_VERSION_KEY

    product = ProductFactory(name="Old name")
    assert client.get("/api/products").json()["items"][0]["name"] == "Old name"
    redis_client.set(cache.make_key(PRODUCTS_VERSION_KEY), garbage)
    assert client.get("/api/products").status_code == 200
    redis_client.set(cache.make_key(PRODUCTS_VERSION_KEY), garbage)
    assert rename(client, staff, product.pk, "New name").status_code == 200
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"
    assert redis_client.get(cache.make_key(PRODUCTS_VERSION_KEY)).isdigit()


@pytest.mark.parametrize("planted", ["a list", b"0123"])
def test_a_version_of_another_type_or_with_leading_zeros_is_replaced(
    client, staff, redis_settings, redis_client, planted
):
    # A list would fail every GET and INCR of it; "0123" would never equal the "123" a page is
    # stored with: either way caching would stay off until someone deleted the key.
    from django.core.cache import cache

    from shop.cache import PRODUCTS_VERSION_KEY, _is_version

    key = cache.make_key(PRODUCTS_VERSION_KEY)

    def plant() -> None:
        redis_client.delete(key)
        if planted == "a list":
            redis_client.rpush(key, "a")
        else:
            redis_client.set(key, planted)

    product = ProductFactory(name="Old name")
    plant()
    assert client.get("/api/products").status_code == 200
    assert _is_version(redis_client.get(key))  # the miss replaced it
    plant()
    assert rename(client, staff, product.pk, "New name").status_code == 200
    assert _is_version(redis_client.get(key))  # so did the write's bump
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"


@pytest.mark.parametrize("version_held", [True, False], ids=["storing", "starting-the-version"])
def test_a_redis_that_stalls_writes_costs_a_miss_at_most_its_timeout_more(
    client, redis_settings, redis_client, caplog, version_held
):
    # The miss's writes (the version's start when none is held, evicted or a new Redis; the
    # page's store) go through the event loop's client, held to SHOP_REDIS_TIMEOUT like the
    # read, not Django's cache client and its 1 s socket timeout. A stall costs the timeout
    # once, and the page is answered, not stored.
    from django.core.cache import cache

    from shop.cache import PRODUCTS_VERSION_KEY, product_page_key

    redis_settings.SHOP_REDIS_TIMEOUT = 0.3
    ProductFactory()
    if version_held:
        assert client.get("/api/products").status_code == 200  # the version is in place
    else:
        redis_client.delete(cache.make_key(PRODUCTS_VERSION_KEY))
    redis_client.execute_command("CLIENT", "PAUSE", 3000, "WRITE")  # scripts are held too
    try:
        started = time.monotonic()
        answered = client.get("/api/products?page_size=10")
        took = time.monotonic() - started
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    assert answered.status_code == 200
    assert took < 0.9, took
    failed = "product page not cached" if version_held else "product list version unread"
    assert f"{failed}; Redis unavailable" in caplog.text
    key = product_page_key(hot=None, page=1, page_size=10)
    assert redis_client.get(key) is None
    # Redis back: the next miss stores its page with the version held.
    assert client.get("/api/products?page_size=10").content == answered.content
    version = redis_client.get(cache.make_key(PRODUCTS_VERSION_KEY))
    assert redis_client.get(key) == version + b"\n" + answered.content


def test_a_write_made_while_a_bump_is_pending_is_bumped_at_once_when_redis_answers(
    client, staff, redis_settings, redis_client, closed_port, monkeypatch
):
    # A bump lost to an outage is pending; Redis answers again; the next write is handed to the
    # retry untried. Its bump lands then, not at the retry's next interval: until it does, a
    # miss in another process may fill from a replica without this write and store it under
    # the current version.
    from django.core.cache import cache

    from shop.cache import PRODUCTS_VERSION_KEY, _invalidation

    monkeypatch.setattr(_invalidation, "_every", 30)  # far longer than this test waits
    product = ProductFactory(name="Old name")
    assert client.get("/api/products").status_code == 200  # the version is in place
    working = redis_settings.CACHES
    redis_settings.CACHES = {
        **working,
        "default": {**working["default"], "LOCATION": f"redis://127.0.0.1:{closed_port}/2"},
    }
    assert rename(client, staff, product.pk, "Middle name").status_code == 200
    assert _invalidation.pending
    redis_settings.CACHES = working
    held = int(redis_client.get(cache.make_key(PRODUCTS_VERSION_KEY)))
    assert rename(client, staff, product.pk, "New name").status_code == 200
    wait_until(lambda: not _invalidation.pending, timeout=5, what="the bump landed at once")
    assert int(redis_client.get(cache.make_key(PRODUCTS_VERSION_KEY))) > held
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"


def test_while_its_bump_is_pending_the_writers_process_never_answers_an_older_page(
    client, staff, redis_settings, closed_port, caplog
):
    # The bump failed (the sync client's Redis refuses) while the event loop's client still
    # reads a page stored before the write: this process knows, and answers from the primary.
    from shop.cache import _invalidation

    product = ProductFactory(name="Old name")
    assert client.get("/api/products").json()["items"][0]["name"] == "Old name"  # stored
    working = redis_settings.CACHES
    redis_settings.CACHES = {
        **working,
        "default": {**working["default"], "LOCATION": f"redis://127.0.0.1:{closed_port}/2"},
    }
    try:
        assert rename(client, staff, product.pk, "Middle name").status_code == 200
        assert _invalidation.pending
        misses = REGISTRY.get_sample_value("django_cache_gets_total", {"result": "miss"}) or 0
        for _ in range(3):
            assert client.get("/api/products").json()["items"][0]["name"] == "Middle name"
        # Each a miss in the cache metrics: the database answered what Redis would have.
        assert REGISTRY.get_sample_value("django_cache_gets_total", {"result": "miss"}) == (
            misses + 3
        )
        # A second write while the first's bump is pending does not try Redis again (each try
        # would wait out the client's timeout): the retry's bump does for both.
        assert rename(client, staff, product.pk, "New name").status_code == 200
        assert caplog.text.count("product list not invalidated yet") == 1
    finally:
        redis_settings.CACHES = working
    wait_until(lambda: not _invalidation.pending, timeout=10, what="the bump landed")
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"


def test_an_invalidation_lost_to_a_redis_stall_lands_once_redis_answers(
    client, staff, redis_settings, redis_cache_container
):
    # Redis busy past the client's timeout while the write commits: the bump fails after the
    # commit, the write is still answered, and the bump is retried until it lands; pages cached
    # before the write are not answered for the rest of their TTL.
    import redis as redis_py

    from tests.app.conftest import REDIS_CACHE_PASSWORD, _address

    product = ProductFactory(name="Old name")
    assert client.get("/api/products").json()["items"][0]["name"] == "Old name"
    host, port = _address(redis_cache_container)
    staller = redis_py.Redis(host=host, port=port, password=REDIS_CACHE_PASSWORD, socket_timeout=10)
    # The server ends the pause itself, so the stall cannot outlive its bound whatever this
    # machine's load; every client's commands wait, as they would behind a slow command.
    staller.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    try:
        assert rename(client, staff, product.pk, "New name").status_code == 200
        # Reads during the stall miss the cache and go to the database, so the check below
        # starts once Redis answers again, when a page cached before the write could be served.
        assert staller.ping()
    finally:
        staller.close()
    deadline = time.monotonic() + 10
    while client.get("/api/products").json()["items"][0]["name"] != "New name":
        assert time.monotonic() < deadline, "the lost bump never landed"
        time.sleep(0.2)


def test_a_page_value_without_its_separator_is_a_miss(client, redis_settings, redis_client):
    from shop.cache import product_page_key

    ProductFactory(name="Lamp")
    key = product_page_key(hot=None, page=1, page_size=10)
    redis_client.set(key, b"%d" % held_version(redis_client))
    assert client.get("/api/products?page_size=10").json()["items"][0]["name"] == "Lamp"


def test_a_hung_cache_costs_the_list_one_wait_not_one_per_call(client, settings, blackhole):
    # The hit's read waits out its timeout once; the fill then asks Redis nothing more (no
    # version, mark or store), each of which would wait its own timeout again.
    cache_at(settings, blackhole.port)
    ProductFactory(name="Lamp")
    response = client.get("/api/products")
    assert response.status_code == 200
    assert response.json()["items"][0]["name"] == "Lamp"
    # The hit's MGET, and nothing else: the replica-down marks every replica read consults
    # live in the broker instance (core.db), so the fill waits on this cache no further.
    assert len(blackhole.accepted) == 1


def test_the_list_is_answered_from_the_database_while_the_cache_is_down(
    client, settings, closed_port
):
    # Nothing listens at the cache's address: every read is a miss, every store is skipped.
    cache_at(settings, closed_port)
    ProductFactory(name="Lamp")
    for _ in range(2):
        response = client.get("/api/products")
        assert response.status_code == 200
        assert response.json()["items"][0]["name"] == "Lamp"


def test_an_evicted_list_version_never_brings_back_an_old_page(client, staff, redis_settings):
    # The cache instance may evict any key, the version among them: a version it starts again
    # must never be one an old page was cached under.
    from django.core.cache import cache

    from shop.cache import PRODUCTS_VERSION_KEY

    product = ProductFactory(name="Old name")
    assert client.get("/api/products").json()["items"][0]["name"] == "Old name"
    cache.delete(PRODUCTS_VERSION_KEY)  # evicted
    assert rename(client, staff, product.pk, "New name").status_code == 200
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"
    cache.delete(PRODUCTS_VERSION_KEY)  # evicted again, with pages cached under two versions
    assert client.get("/api/products").json()["items"][0]["name"] == "New name"


def test_product_detail_falls_back_when_upstreams_are_down(client, settings):
    settings.PRICE_SERVICE_URL = settings.RECOMMENDATIONS_SERVICE_URL = "http://127.0.0.1:1"
    product = ProductFactory(price="5.00")
    body = client.get(f"/api/products/{product.pk}").json()
    assert body["price"] == "5.00"
    assert body["pricing_service_price"] is None
    assert body["recommendations"] == []


def test_unknown_product_is_a_json_404(client):
    response = client.get("/api/products/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def order(client, headers, items, key=None):
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return post(client, "/api/orders", {"items": items}, **headers, **extra)


def test_order_decrements_stock_and_totals(client, customer):
    _, headers = customer
    mug, pot = ProductFactory(price="2.50", stock=5), ProductFactory(price="10.00", stock=1)
    response = order(
        client,
        headers,
        [{"product_id": mug.pk, "quantity": 2}, {"product_id": pot.pk, "quantity": 1}],
    )
    assert response.status_code == 201, response.content
    assert response.json()["total"] == "15.00"
    mug.refresh_from_db()
    pot.refresh_from_db()
    assert (mug.stock, pot.stock) == (3, 0)


def test_out_of_stock_is_a_409_and_changes_nothing(client, customer):
    _, headers = customer
    mug = ProductFactory(stock=1)
    response = order(client, headers, [{"product_id": mug.pk, "quantity": 2}])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "out_of_stock"
    mug.refresh_from_db()
    assert mug.stock == 1
    assert Order.objects.count() == 0


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], "items"),
        ([{"product_id": 1, "quantity": 0}], "items.0.quantity"),
        ([{"product_id": 1, "quantity": -3}], "items.0.quantity"),
        ([{"product_id": "one", "quantity": 1}], "items.0.product_id"),
        ([{"quantity": 1}], "items.0.product_id"),
    ],
)
def test_invalid_orders_name_the_field(client, customer, items, field):
    _, headers = customer
    response = order(client, headers, items)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Order.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # A misspelt price guard: the order would be placed at whatever the price is now.
        ({"items": [{"quantity": 1, "expected_price": "0.01"}]}, "items.0.expected_price"),
        # A key in the body, not the header: a retry would place a second order.
        ({"items": [{"quantity": 1}], "idempotency_key": "abc"}, "idempotency_key"),
    ],
)
def test_a_misspelt_field_in_an_order_is_a_400_naming_it_and_places_nothing(
    client, customer, body, field
):
    _, headers = customer
    mug = ProductFactory(stock=5, price="3.20")
    for item in body["items"]:
        item["product_id"] = mug.pk
    response = post(client, "/api/orders", body, **headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["fields"], response.json()
    assert Order.objects.count() == 0
    mug.refresh_from_db()
    assert mug.stock == 5


def test_a_misspelt_field_in_a_new_product_is_a_400_naming_it_and_creates_nothing(client, staff):
    body = {"name": "Typo", "price": "2.00", "stock": 3, "hott": True}
    response = post(client, "/api/products", body, **staff)
    assert response.status_code == 400, response.text
    assert list(response.json()["error"]["fields"]) == ["hott"]
    assert not Product.objects.filter(name="Typo").exists()


def test_lines_for_the_same_product_are_added_up(client, customer):
    _, headers = customer
    mug = ProductFactory(stock=5, price="1.00")
    lines = [{"product_id": mug.pk, "quantity": 1}, {"product_id": mug.pk, "quantity": 2}]
    response = order(client, headers, lines)
    assert response.status_code == 201
    assert response.json()["items"] == [
        {"product_id": mug.pk, "product_name": mug.name, "quantity": 3, "unit_price": "1.00"}
    ]


def test_unknown_product_in_an_order_is_a_404(client, customer):
    _, headers = customer
    response = order(client, headers, [{"product_id": 987654, "quantity": 1}])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_products"


def test_idempotency_key_replays_the_first_order(client, customer):
    _, headers = customer
    mug = ProductFactory(stock=5)
    items = [{"product_id": mug.pk, "quantity": 1}]
    first = order(client, headers, items, key="retry-1")
    again = order(client, headers, items, key="retry-1")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Order.objects.count() == 1
    mug.refresh_from_db()
    assert mug.stock == 4

    other = order(client, headers, [{"product_id": mug.pk, "quantity": 2}], key="retry-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_an_order_shows_the_name_its_product_had_when_it_was_placed(client, customer, staff):
    """The name and the unit price are the order's record: renaming and repricing the product
    later changes neither a replay of the order, its page nor the list of orders."""
    _, headers = customer
    mug = ProductFactory(stock=5, name="Mug", price="9.99")
    items = [{"product_id": mug.pk, "quantity": 1}]
    first = order(client, headers, items, key="renamed-later")
    assert first.status_code == 201, first.text
    renamed = patch(client, staff, mug.pk, {"name": "Big mug", "price": "12.00"})
    assert renamed.status_code == 200, renamed.text
    replay = order(client, headers, items, key="renamed-later")
    page = client.get(f"/api/orders/{first.json()['id']}", **headers)
    listed = client.get("/api/orders", **headers).json()["items"]
    names = [r["items"][0]["product_name"] for r in (first.json(), replay.json(), page.json())]
    assert [*names, listed[0]["items"][0]["product_name"]] == ["Mug"] * 4
    answers = (first.json(), replay.json(), page.json(), listed[0])
    assert [r["items"][0]["unit_price"] for r in answers] == ["9.99"] * 4
    assert Product.objects.get(pk=mug.pk).name == "Big mug"


def test_customers_see_only_their_own_orders(client, customer):
    user, headers = customer
    mine = OrderItemFactory(order__customer=user).order
    theirs = OrderItemFactory().order
    assert client.get(f"/api/orders/{mine.pk}", **headers).status_code == 200
    response = client.get(f"/api/orders/{theirs.pk}", **headers)
    assert response.status_code == 404
    assert "items" not in response.json()
    assert [o["id"] for o in client.get("/api/orders", **headers).json()["items"]] == [mine.pk]


def test_order_list_query_count_does_not_grow_with_page_size(client, customer, redis_settings):
    user, headers = customer
    for _ in range(12):
        OrderItemFactory.create_batch(2, order=OrderItemFactory(order__customer=user).order)

    def queries(page_size):
        with CaptureQueriesContext(connections["replica"]) as ctx:
            body = client.get(f"/api/orders?page_size={page_size}", **headers).json()
        assert len(body["items"]) == page_size
        return len(ctx)

    assert queries(2) == queries(10) == 3


def patch(client, headers, product_id, body):
    return client.patch(
        f"/api/products/{product_id}",
        data=json.dumps(body),
        content_type="application/json",
        **headers,
    )


def test_a_name_patch_locks_the_row_and_writes_only_the_name(client, staff):
    mug = ProductFactory(name="Mug", stock=5)
    with CaptureQueriesContext(connections["default"]) as queries:
        response = patch(client, staff, mug.pk, {"name": "Cup"})
    assert response.status_code == 200
    sql = [q["sql"] for q in queries]
    assert any("FOR UPDATE" in s for s in sql)
    updates = [s for s in sql if s.startswith('UPDATE "shop_product"')]
    # A stock value read before the lock would undo the orders placed since: none is written.
    assert updates
    assert all('"stock"' not in s for s in updates), updates
    mug.refresh_from_db()
    assert (mug.name, mug.stock) == ("Cup", 5)


def test_stock_delta_moves_the_current_count(client, staff):
    mug = ProductFactory(stock=5)
    Product.objects.filter(pk=mug.pk).update(stock=3)  # sold meanwhile
    response = patch(client, staff, mug.pk, {"stock_delta": 10})
    assert response.status_code == 200
    assert response.json()["stock"] == 13
    assert patch(client, staff, mug.pk, {"stock_delta": -13}).json()["stock"] == 0


def test_stock_delta_below_zero_is_a_409_naming_it(client, staff):
    mug = ProductFactory(stock=2)
    response = patch(client, staff, mug.pk, {"stock_delta": -3})
    assert response.status_code == 409
    assert "stock_delta" in response.json()["error"]["fields"]
    mug.refresh_from_db()
    assert mug.stock == 2


def test_stock_delta_past_what_the_column_holds_is_a_400_naming_it(client, staff):
    mug = ProductFactory(stock=2**31 - 1)
    response = patch(client, staff, mug.pk, {"stock_delta": 1})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    # The count it would leave is what breaks the rule, not the 1 sent.
    assert response.json()["error"]["fields"]["stock_delta"] == [
        "stock_delta: +1 would leave stock at 2147483648: Ensure this value is less than or"
        " equal to 2147483647."
    ]
    mug.refresh_from_db()
    assert mug.stock == 2**31 - 1


def test_an_order_at_a_price_the_catalogue_no_longer_has_is_a_409_and_charges_nothing(
    client, customer
):
    _, headers = customer
    mug = ProductFactory(stock=5, price="7.77")
    shown = [{"product_id": mug.pk, "quantity": 1, "expected_unit_price": "2.11"}]
    response = order(client, headers, shown)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "price_changed"
    assert "7.77" in error["message"]
    assert Order.objects.count() == 0
    mug.refresh_from_db()
    assert mug.stock == 5

    shown[0]["expected_unit_price"] = "7.77"
    placed = order(client, headers, shown)
    assert placed.status_code == 201
    assert placed.json()["items"][0]["unit_price"] == "7.77"


def test_stock_and_stock_delta_together_are_a_400(client, staff):
    mug = ProductFactory(stock=2)
    response = patch(client, staff, mug.pk, {"stock": 5, "stock_delta": 1})
    assert response.status_code == 400
    assert "stock_delta" in response.json()["error"]["fields"]
    mug.refresh_from_db()
    assert mug.stock == 2


@pytest.mark.parametrize("field", ["name", "description", "price", "stock", "stock_delta", "hot"])
def test_a_field_patched_to_null_is_a_400_naming_it_and_changes_nothing(client, staff, field):
    mug = ProductFactory(name="Mug", stock=5, price="2.00")
    response = patch(client, staff, mug.pk, {"name": "Cup", field: None})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "must not be null" in " ".join(error["fields"][field])
    mug.refresh_from_db()
    assert (mug.name, mug.stock, str(mug.price)) == ("Mug", 5, "2.00")


@pytest.mark.parametrize("body", [{"stok": 3}, {"name": "Cup", "stok": 3}, {"id": 99}])
def test_a_field_a_product_has_not_is_a_400_naming_it_and_changes_nothing(client, staff, body):
    mug = ProductFactory(name="Mug", stock=5, price="2.00")
    response = patch(client, staff, mug.pk, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    unknown = next(field for field in body if field not in ("name",))
    assert unknown in error["fields"], error
    mug.refresh_from_db()
    assert (mug.pk, mug.name, mug.stock) == (mug.pk, "Mug", 5)


@pytest.mark.parametrize(
    "name",
    [
        " ", "   ", "\t\n", "\u00a0", "\u3000", "\u2028", "\x1c\x1f\x7f",
        "\u200b", " \u200b ", "\ufeff", "\u2060", "\u180e", "\u00ad", "\u034f", "\u115f",
        "\u3164", "\u2800", "\u202e", "\u200e", "\ufe0f",
    ],
)  # fmt: skip
def test_a_blank_product_name_is_a_400_naming_it(client, staff, name):
    response = post(client, "/api/products", {"name": name, "price": "1.00", "stock": 1}, **staff)
    assert response.status_code == 400, response.text
    assert list(response.json()["error"]["fields"]) == ["name"]
    assert patch(client, staff, ProductFactory().pk, {"name": name}).status_code == 400
    assert not Product.objects.filter(name=name).exists()


@pytest.mark.parametrize(
    "name", ["Tea pot", " Teapot", "Teapot\t", "\u202eTeapot", "\u00e9", "\u4e2d"]
)
def test_a_product_name_with_spaces_around_a_word_is_kept_as_sent(client, staff, name):
    response = post(client, "/api/products", {"name": name, "price": "1.00", "stock": 1}, **staff)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


@pytest.mark.parametrize("spelt", ["1_0", "+10", "%2010", "010", "10.0", "1%5F0"])
def test_a_product_id_is_spelt_one_way_in_the_url(client, spelt):
    """Each of these parsed as 10: one product answering (and cached) at many URLs."""
    response = client.get(f"/api/products/{spelt}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "no leading zero" in " ".join(error["fields"]["product_id"])


def test_patching_an_unknown_product_is_a_json_404(client, staff):
    response = patch(client, staff, 987654, {"name": "Ghost"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_order_reply_is_read_from_the_primary_only(client, customer):
    _, headers = customer
    mug = ProductFactory(stock=5, price="1.00")
    with CaptureQueriesContext(connections["replica"]) as replica_queries:
        response = order(client, headers, [{"product_id": mug.pk, "quantity": 1}], key="k-1")
        again = order(client, headers, [{"product_id": mug.pk, "quantity": 1}], key="k-1")
    line = {"product_id": mug.pk, "product_name": mug.name, "quantity": 1, "unit_price": "1.00"}
    assert response.json()["items"] == again.json()["items"] == [line]
    # A lagging or dead replica must not shape (or fail) the answer to a committed order.
    assert list(replica_queries) == []
