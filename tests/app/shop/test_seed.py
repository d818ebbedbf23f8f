from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import F, Sum

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
