"""Which alias the router picks for the shop's related reads, without a database: the hints alone
decide (tests/app/core/test_db_router.py: the same without the demo)."""

from core.db_router import PRIMARY, REPLICA, PrimaryReplicaRouter
from shop.models import Order, OrderItem, Product


def test_plain_reads_go_to_the_replica():
    assert PrimaryReplicaRouter().db_for_read(OrderItem) == REPLICA


def test_related_reads_of_an_object_from_the_primary_stay_on_the_primary():
    router = PrimaryReplicaRouter()
    order, item = Order(), OrderItem()
    order._state.db = item._state.db = PRIMARY
    assert router.db_for_read(OrderItem, instance=order) == PRIMARY  # order.items
    assert router.db_for_read(Product, instance=item) == PRIMARY  # item.product


def test_related_reads_of_an_object_from_the_replica_stay_on_the_replica():
    order = Order()
    order._state.db = REPLICA
    assert PrimaryReplicaRouter().db_for_read(OrderItem, instance=order) == REPLICA
