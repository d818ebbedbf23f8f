from decimal import Decimal

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from shop.errors import InvalidProduct
from shop.models import Product
from shop.schemas import OrderOut
from shop.services import order_create, product_create
from tests.app.accounts.factories import UserFactory
from tests.app.shop.factories import ProductFactory

pytestmark = pytest.mark.django_db(databases=["default", "replica"])


def test_product_create_persists_on_the_primary():
    product = product_create(name="Mug", price=Decimal("4.50"), stock=3)
    assert Product.objects.using("default").get(pk=product.pk).name == "Mug"


def test_product_create_rejects_a_negative_price_and_writes_nothing():
    with pytest.raises(InvalidProduct) as excinfo:
        product_create(name="Mug", price=Decimal("-1"), stock=3)
    assert excinfo.value.field == "price"
    assert Product.objects.using("default").count() == 0


@pytest.mark.parametrize("replayed", [False, True], ids=["placed", "replayed"])
def test_an_order_holds_all_its_answer_shows_so_nothing_is_read_after_its_commit(replayed):
    """Once an order is committed, a database that stops answering must not turn its 201 into
    an error: the answer (OrderOut) is built from what the service read before the commit."""
    customer = UserFactory()
    products = [ProductFactory(stock=5, name="Lamp"), ProductFactory(stock=5, name="Desk")]
    items = {products[0].pk: 2, products[1].pk: 1}
    order, created = order_create(customer=customer, items=items, idempotency_key="k1")
    if replayed:
        order, created = order_create(customer=customer, items=items, idempotency_key="k1")
    assert created is not replayed
    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(connections["replica"]) as replica,
    ):
        answer = OrderOut.from_orm(order).dict()
    assert primary.captured_queries == replica.captured_queries == []
    assert sorted((i["product_name"], i["quantity"]) for i in answer["items"]) == [
        ("Desk", 1),
        ("Lamp", 2),
    ]


def test_placing_an_order_reads_back_nothing_it_wrote():
    """An order's statements: the product rows locked, their stock moved, the order, its lines
    and its confirmation written, and nothing read back (the answer and the email come from
    the rows written). The confirmation is one INSERT, not get_or_create's read, savepoint and
    insert."""
    customer = UserFactory(email="buyer@example.com")
    products = [ProductFactory(stock=5), ProductFactory(stock=5)]
    with CaptureQueriesContext(connections["default"]) as primary:
        order, _ = order_create(customer=customer, items={p.pk: 1 for p in products})
    statements = [q["sql"].split(None, 3)[:3] for q in primary.captured_queries]
    writes = [s[0] for s in statements if s[0] not in ("SAVEPOINT", "RELEASE")]
    assert writes == ["SELECT", "UPDATE", "INSERT", "INSERT", "INSERT"], statements
    assert "FOR UPDATE" in primary.captured_queries[1]["sql"]
    assert order.items.all()[0].product_name == products[0].name
    assert [line.product_id for line in order.items.all()] == [p.pk for p in products]
