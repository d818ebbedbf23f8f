"""The shop's admin forms as a superuser uses them, through Django's test client on the real test
database: orders are read-only, and the product form saves through the shop's services
(tests/app/core/test_admin.py: every model's list pages, search and filters)."""

from decimal import Decimal

import pytest
from django.urls import reverse

from shop.models import Order
from shop.services import order_create
from tests.app.accounts.factories import UserFactory
from tests.app.shop.factories import OrderItemFactory, ProductFactory

# Committed transactions, as in tests/app/core/test_admin.py: the admin reads through the
# replica alias, a second connection.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def test_orders_are_read_only(superuser_client):
    order = OrderItemFactory(order__customer=UserFactory(), product__name="Teapot").order
    page = superuser_client.post(
        reverse("admin:shop_order_change", args=[order.pk]), {"status": "cancelled"}
    )
    assert page.status_code == 403
    assert Order.objects.get(pk=order.pk).status == Order.Status.PLACED


def test_a_product_saved_in_the_admin_goes_through_the_service(superuser_client, redis_settings):
    product = ProductFactory(name="Kettle", price=Decimal("12.50"), stock=4)
    form = _product_form(product, stock=9)
    response = superuser_client.post(reverse("admin:shop_product_change", args=[product.pk]), form)
    assert response.status_code == 302, response.content
    product.refresh_from_db()
    assert product.stock == 9
    # product_update's doing: a stock change bumps the version the Redis copy is ordered by.
    assert product.stock_version == 1


def _product_form(product, **changes):
    form = {
        "name": product.name,
        "description": product.description,
        "price": str(product.price),
        "stock": product.stock,
        "seen_stock": product.stock,
        "seen_stock_version": product.stock_version,
    }
    return {**form, **changes}


def test_a_stale_product_form_never_writes_back_stock_that_orders_took(
    superuser_client, redis_settings
):
    product = ProductFactory(name="Teapot", price=Decimal("3.50"), stock=4)
    opened = _product_form(product)  # the page as the editor opened it: stock 4
    order_create(customer=UserFactory(), items={product.pk: 1})  # meanwhile a sale: 3 left
    url = reverse("admin:shop_product_change", args=[product.pk])
    response = superuser_client.post(url, {**opened, "name": "Teapot v2"})
    assert response.status_code == 302, response.content
    product.refresh_from_db()
    assert (product.name, product.stock) == ("Teapot v2", 3)


def test_a_stock_take_over_a_sale_made_meanwhile_is_refused_with_the_current_count(
    superuser_client, redis_settings
):
    product = ProductFactory(name="Teapot", price=Decimal("3.50"), stock=4)
    opened = _product_form(product)
    order_create(customer=UserFactory(), items={product.pk: 1})
    url = reverse("admin:shop_product_change", args=[product.pk])
    response = superuser_client.post(url, {**opened, "stock": 10})
    assert response.status_code == 200
    assert "Orders changed the stock since this page was opened (it is 3 now)" in (
        response.content.decode()
    )
    product.refresh_from_db()
    assert product.stock == 3
