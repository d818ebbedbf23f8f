from decimal import Decimal

import pytest

from shop.errors import InvalidProduct
from shop.models import Product
from shop.services import product_create

pytestmark = pytest.mark.django_db(databases=["default", "replica"])


def test_product_create_persists_on_the_primary():
    product = product_create(name="Mug", price=Decimal("4.50"), stock=3)
    assert Product.objects.using("default").get(pk=product.pk).name == "Mug"


def test_product_create_rejects_a_negative_price_and_writes_nothing():
    with pytest.raises(InvalidProduct) as excinfo:
        product_create(name="Mug", price=Decimal("-1"), stock=3)
    assert excinfo.value.field == "price"
    assert Product.objects.using("default").count() == 0
