import pytest

from shop.models import Product
from shop.schemas import ProductOut
from shop.selectors import product_get
from tests.app.shop.factories import ProductFactory

# Committed transactions: the replica alias is a second connection, which cannot see rows
# inside another connection's open test transaction.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def test_product_get_returns_the_product_or_none():
    product = ProductFactory()
    assert product_get(product_id=product.pk) == product
    assert product_get(product_id=product.pk + 1000) is None


def test_reads_go_to_the_replica_and_writes_to_the_primary():
    assert Product.objects.all().db == "replica"
    product = ProductFactory()
    assert product._state.db == "default"


def test_product_out_serialises_price_as_a_string():
    product = ProductFactory(price="12.30")
    assert ProductOut.from_orm(product).model_dump()["price"] == "12.30"
