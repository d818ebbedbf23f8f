"""The product page's stock copy in Redis: never rolled back, never stale past its TTL."""

import pytest
from asgiref.sync import async_to_sync
from prometheus_client import REGISTRY

from shop.services import order_create
from shop.stock import stock_cache_get
from tests.app.accounts.factories import UserFactory
from tests.app.shop.factories import ProductFactory
from tests.support import wait_until

# One test transaction: its on-commit hooks are captured, then run in the order a test needs.
pytestmark = pytest.mark.django_db(databases=["default", "replica"])


def cached_stock(product_id):
    return async_to_sync(stock_cache_get)(product_id=product_id)


def test_hooks_running_out_of_commit_order_never_roll_the_count_back(
    redis_settings, broker_down, django_capture_on_commit_callbacks
):
    product = ProductFactory(stock=10)
    customer = UserFactory()
    with django_capture_on_commit_callbacks(using="default") as first:
        order_create(customer=customer, items={product.pk: 1})
    with django_capture_on_commit_callbacks(using="default") as second:
        order_create(customer=customer, items={product.pk: 2})
    # The later transaction's hooks land first, as two web workers can make them.
    for hook in [*second, *first]:
        hook()
    assert cached_stock(product.pk) == 7


def test_a_count_lost_to_a_failed_write_lands_once_redis_answers_and_expires_within_the_bound(
    redis_settings,
    redis_client,
    broker_down,
    closed_port,
    django_capture_on_commit_callbacks,
    caplog,
):
    redis_settings.STOCK_CACHE_TTL = 30
    product = ProductFactory(stock=10)
    customer = UserFactory()
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=customer, items={product.pk: 1})
    assert cached_stock(product.pk) == 9
    with django_capture_on_commit_callbacks(using="default") as hooks:
        order_create(customer=customer, items={product.pk: 1})
    # Redis refuses the write that follows the commit: the old count stays behind...
    working = redis_settings.CACHES
    redis_settings.CACHES = {
        alias: {**config, "LOCATION": f"redis://:x@127.0.0.1:{closed_port}/2"}
        for alias, config in working.items()
    }
    for hook in hooks:
        hook()
    assert redis_client.hget(f"stock:v:{product.pk}", "n") == b"9"
    # ...which this process does not answer while its newer count has not landed: the page
    # reads the row (another process serves the old count within the bound below).
    assert cached_stock(product.pk) is None
    # A later order while that write is pending does not try Redis again (each try would wait
    # out the client's timeout): the retry writes the newest count of each product.
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=customer, items={product.pk: 1})
    assert caplog.text.count("stock not cached yet") == 1
    # ...until Redis answers again: the write is retried in the background (core.retry)...
    redis_settings.CACHES = working
    wait_until(lambda: cached_stock(product.pk) == 7, timeout=10, what="the lost count written")
    # ...and never past its TTL, which every write sets and the settings bound.
    keys = list(redis_client.scan_iter("stock:*"))
    assert keys
    for key in keys:
        assert 0 < redis_client.pttl(key) <= 30_000


def test_a_dropped_stock_read_is_tried_once_not_retried(settings, dropping_server):
    # redis-py's default would try eleven times with backoff: seconds of a product page.
    settings.REDIS_CACHE_HOST, settings.REDIS_CACHE_PORT = "127.0.0.1", dropping_server.port
    assert async_to_sync(stock_cache_get)(product_id=1) is None
    assert dropping_server.connections == 1


def test_an_order_while_a_list_bump_is_pending_hands_its_count_to_the_retry(
    redis_settings, broker_down, closed_port, django_capture_on_commit_callbacks, caplog
):
    # Both go to the cache instance: once one write to it is pending, the next does not wait
    # out the client's timeout to learn the same (an order made two such waits).
    from shop.cache import _invalidation, product_list_invalidate

    product = ProductFactory(stock=10)
    working = redis_settings.CACHES
    redis_settings.CACHES = {
        **working,
        "default": {**working["default"], "LOCATION": f"redis://:x@127.0.0.1:{closed_port}/2"},
    }
    try:
        product_list_invalidate()
        assert _invalidation.pending
        with django_capture_on_commit_callbacks(using="default", execute=True):
            order_create(customer=UserFactory(), items={product.pk: 1})
        assert "stock not cached yet" not in caplog.text
    finally:
        redis_settings.CACHES = working
    wait_until(lambda: cached_stock(product.pk) == 9, timeout=10, what="the count written")


@pytest.mark.parametrize(
    "planted",
    [
        {"n": "abc"},
        {"v": "1", "n": "12.5"},
        {"v": "x", "n": "abc"},
        {"n": "-42"},
        "a string",
        # More than a row holds, and more digits than int() reads.
        {"v": "2", "n": "2147483648"},
        {"n": "9" * 32},
        {"n": "9" * 5000},
    ],
    ids=["abc", "fraction", "bad-version", "negative", "string", "over-int", "32-digits", "5000"],
)
def test_a_stock_copy_that_is_not_a_count_is_a_miss_and_the_next_write_replaces_it(
    redis_settings, redis_client, broker_down, django_capture_on_commit_callbacks, planted
):
    # Written by hand or by another program: the product page reads the row rather than fail,
    # and the copy the next stock change writes is read again.
    product = ProductFactory(stock=10)
    key = f"stock:v:{product.pk}"
    if isinstance(planted, dict):
        redis_client.hset(key, mapping=planted)
    else:
        redis_client.set(key, planted)
    assert cached_stock(product.pk) is None
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=UserFactory(), items={product.pk: 1})
    assert cached_stock(product.pk) == 9


def test_a_copy_that_is_not_a_count_does_not_hold_back_the_warning_that_redis_failed(
    redis_settings, redis_client, closed_port, caplog
):
    # A copy of another type is Redis's data, not an outage, and each kind of warning is
    # throttled on its own: a bad copy logged a moment ago must not hide that Redis then
    # stopped answering.
    product = ProductFactory(stock=10)
    redis_client.set(f"stock:v:{product.pk}", "a string")
    assert cached_stock(product.pk) is None
    assert f"stock copy of product {product.pk} is not a count: ignored" in caplog.text
    assert "stock read from Redis failed" not in caplog.text
    redis_settings.REDIS_CACHE_PORT = closed_port  # the event loop's client's Redis
    assert cached_stock(product.pk) is None
    assert "stock read from Redis failed" in caplog.text


def test_a_copy_with_a_huge_version_and_no_expiry_is_replaced_by_the_next_write(
    redis_settings, redis_client, broker_down, django_capture_on_commit_callbacks
):
    # Planted by hand: every write of ours sets an expiry, so a copy without one is not ours,
    # and its version must not keep every later count out for good.
    redis_settings.STOCK_CACHE_TTL = 30
    product = ProductFactory(stock=10)
    key = f"stock:v:{product.pk}"
    redis_client.hset(key, mapping={"v": 99999999999, "n": 5})
    assert cached_stock(product.pk) == 5  # a count: served until the next write
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=UserFactory(), items={product.pk: 1})
    assert cached_stock(product.pk) == 9
    assert 0 < redis_client.pttl(key) <= 30_000


def test_the_stock_read_and_write_are_in_the_cache_metrics(
    redis_settings, broker_down, django_capture_on_commit_callbacks
):
    """The product page's Redis read is one of its cache calls: timed, and counted a hit or a
    miss like the cache backend's own gets; so is the write after a stock change."""

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    timed = "django_cache_operation_duration_seconds_count"
    before = {
        "get": sample(timed, operation="get"),
        "set": sample(timed, operation="set"),
        "hit": sample("django_cache_gets_total", result="hit"),
        "miss": sample("django_cache_gets_total", result="miss"),
    }
    product = ProductFactory(stock=10)
    assert cached_stock(product.pk) is None  # no copy yet
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=UserFactory(), items={product.pk: 1})
    assert cached_stock(product.pk) == 9
    assert sample(timed, operation="get") == before["get"] + 2
    assert sample(timed, operation="set") >= before["set"] + 1  # the copy, and the list's bump
    assert sample("django_cache_gets_total", result="miss") == before["miss"] + 1
    assert sample("django_cache_gets_total", result="hit") == before["hit"] + 1


def test_an_order_of_several_products_caches_their_counts_in_one_round_trip_each_only_if_newer(
    redis_settings, redis_client, broker_down, django_capture_on_commit_callbacks
):
    redis_settings.STOCK_CACHE_TTL = 30
    first, held, third = (
        ProductFactory(stock=10),
        ProductFactory(stock=10),
        ProductFactory(stock=10),
    )
    customer = UserFactory()
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=customer, items={first.pk: 1})  # the script is loaded now
    # A newer copy of one product, as another worker's later hook writes it: kept.
    redis_client.hset(f"stock:v:{held.pk}", mapping={"v": 99, "n": 3})
    redis_client.pexpire(f"stock:v:{held.pk}", 30_000)
    redis_client.config_resetstat()
    with django_capture_on_commit_callbacks(using="default", execute=True):
        order_create(customer=customer, items={first.pk: 1, held.pk: 2, third.pk: 3})
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in redis_client.info("commandstats").items()
        if name.startswith(("cmdstat_evalsha", "cmdstat_script"))
    }
    # The stock write is one EVALSHA for every product, no SCRIPT EXISTS before it.
    assert calls == {"evalsha": 1}
    assert [cached_stock(p.pk) for p in (first, held, third)] == [8, 3, 7]
