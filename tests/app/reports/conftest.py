from datetime import UTC, datetime

import pytest
from django.db import connections

from shop.models import Order, Product
from tests.app.shop.factories import OrderFactory, OrderItemFactory


@pytest.fixture(autouse=True)
def _redis(redis_settings):
    """The real test Redis as the cache: report reads ask it whether the replica is down."""


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


def at(day: int, hour: int = 12, second: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, 0, second, tzinfo=UTC)


def order_at(customer, created_at: datetime, lines: dict[Product, int], **fields) -> Order:
    order = OrderFactory(customer=customer, **fields)
    for product, quantity in lines.items():
        OrderItemFactory(order=order, product=product, quantity=quantity, unit_price=product.price)
    Order.objects.filter(pk=order.pk).update(created_at=created_at)
    return order


def bulk_orders(customer_id: int, product_ids: list[int], count: int, days: int) -> None:
    """`count` orders spread over `days` days from 2025-03-01, three to a timestamp (ties for
    the keyset), 1-3 lines each; generated inside Postgres."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO shop_order (customer_id, status, total, created_at, request_fingerprint)
            SELECT %s, 'placed', 0,
                   '2025-03-01'::timestamptz + ((g / 3) %% (%s * 28800)) * interval '3 second', ''
            FROM generate_series(0, %s - 1) AS g
            """,
            [customer_id, days, count],
        )
        cursor.execute(
            """
            INSERT INTO shop_orderitem (order_id, product_id, product_name, quantity, unit_price)
            SELECT o.id, p.id, p.name, 1 + (o.id + p.id) %% 4, p.price
            FROM shop_order AS o
            JOIN shop_product AS p ON p.id = ANY(%s) AND (o.id + p.id) %% 3 <> 0
            """,
            [product_ids],
        )
