"""The shop's data migrations, run forward over rows written by the schema before them."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("shop", "0003_product_stock_version")]
AFTER = [("shop", "0004_orderitem_product_name")]


@pytest.mark.django_db(transaction=True)
def test_lines_placed_before_names_were_recorded_take_the_catalogue_name() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    product = old.get_model("shop", "Product").objects.create(name="Lamp", price=Decimal("2"))
    customer = old.get_model("accounts", "User").objects.create(username="before-0004")
    order = old.get_model("shop", "Order").objects.create(customer_id=customer.pk, total=2)
    line = old.get_model("shop", "OrderItem").objects.create(
        order_id=order.pk, product_id=product.pk, quantity=1, unit_price=Decimal("2")
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    assert (
        new.get_model("shop", "OrderItem").objects.using("default").get(pk=line.pk).product_name
        == "Lamp"
    )
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
