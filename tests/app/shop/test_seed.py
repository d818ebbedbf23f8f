from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F, Sum

from shop.management.commands import seed
from shop.management.commands.seed import ORDERS_SQL
from shop.models import Order, OrderItem, Product

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_creates_orders_with_items_and_consistent_totals():
    call_command("seed", customers=5, products=7, orders=300, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Product.objects.using("default").count() == 7
    assert Order.objects.using("default").count() == 300
    orders = Order.objects.using("default")
    assert not orders.filter(items__isnull=True).exists()
    for order in orders.order_by("?")[:20]:
        expected = (
            OrderItem.objects.using("default")
            .filter(order=order)
            .aggregate(t=Sum(F("quantity") * F("unit_price")))["t"]
        )
        assert order.total == expected
        assert order.total > Decimal("0")


def test_seed_twice_adds_orders_but_not_customers_or_products():
    call_command("seed", customers=3, products=4, orders=10, stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("seed", customers=3, products=4, orders=10, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Product.objects.using("default").count() == 4
    assert Order.objects.using("default").count() == 20


def quiet() -> dict[str, object]:
    return {"stdout": open("/dev/null", "w")}


def test_orders_far_into_the_series_get_a_customer():
    # `manage.py seed --orders 400000` numbers its orders 1..400000 in one generate_series; the
    # customer picked for number g once overflowed a 32-bit integer past about 271,000. The
    # seed's own statement, at the end of that series, on real Postgres.
    call_command("seed", customers=5, products=3, orders=0, **quiet())
    with connection.cursor() as cursor:
        cursor.execute(ORDERS_SQL, {"first": 399_991, "last": 400_000, "days": 365, "end": None})
    customers = set(
        get_user_model()
        .objects.using("default")
        .filter(username__startswith="seed-")
        .values_list("pk", flat=True)
    )
    assert Order.objects.using("default").count() == 10
    assert set(Order.objects.using("default").values_list("customer_id", flat=True)) <= customers


def test_a_seed_that_fails_says_how_many_orders_it_committed(monkeypatch):
    monkeypatch.setattr(seed, "BATCH", 4)
    # Postgres refuses orders past the first batch (a real constraint, for this test only).
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('shop_order', 'id'))")
        (last_id,) = cursor.fetchone()
        cursor.execute(
            "ALTER TABLE shop_order ADD CONSTRAINT test_seed_cap "
            f"CHECK (id <= {last_id + 4}) NOT VALID"
        )
    try:
        with pytest.raises(CommandError) as failed:
            call_command("seed", customers=3, products=2, orders=10, **quiet())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE shop_order DROP CONSTRAINT test_seed_cap")
    message = str(failed.value)
    assert "4 of 10 orders" in message, message
    assert "test_seed_cap" in message, message
    assert Order.objects.using("default").count() == 4


def test_seeded_products_are_on_the_cached_list_at_once(client, redis_settings):
    # The list is cached in Redis and invalidated by every product write: seeding is one.
    call_command("seed", customers=1, products=2, orders=0, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert client.get("/api/products").json()["count"] == 2  # cached now
    call_command("seed", customers=1, products=5, orders=0, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert client.get("/api/products").json()["count"] == 5
