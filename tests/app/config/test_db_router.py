"""Where the router sends reads (config.db_router)."""

import pytest

from config.db_router import PRIMARY, REPLICA, PrimaryReplicaRouter
from shop.models import Order, OrderItem, Product
from tests.app.shop.factories import ProductFactory

router = PrimaryReplicaRouter()


def test_reads_go_to_the_replica_without_a_hint():
    assert router.db_for_read(OrderItem) == REPLICA


@pytest.mark.django_db(databases=["default", "replica"], transaction=True)
def test_a_relation_of_a_primary_row_is_read_on_the_primary():
    product = ProductFactory()
    from_primary = Product.objects.using(PRIMARY).get(pk=product.pk)
    from_replica = Product.objects.using(REPLICA).get(pk=product.pk)
    assert router.db_for_read(OrderItem, instance=from_primary) == PRIMARY
    assert router.db_for_read(OrderItem, instance=from_replica) == REPLICA
    assert router.db_for_read(Order, instance=Order(pk=1)) == REPLICA  # not read anywhere yet
