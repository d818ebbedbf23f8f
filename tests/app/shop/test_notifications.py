"""The order confirmation (shop.notifications) through the outbox, on the real test Postgres
(and a broker that is down or dropping connections, as each test says).

SMTP: Django's locmem backend (pytest-django's default) for what was sent.
"""

from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction

from notifications.models import OutboxEmail
from notifications.services import outbox_sweep
from shop.models import Order
from shop.services import order_create
from tests.app.accounts.factories import UserFactory
from tests.app.shop.factories import ProductFactory

# Committed transactions: on-commit hooks run, and a second connection sees the rows.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)
State = OutboxEmail.State


def place_order(email: str = "ada@example.com") -> Order:
    product = ProductFactory(name="Teapot", price=Decimal("3.20"), stock=5)
    order, _ = order_create(customer=UserFactory(email=email), items={product.pk: 2})
    return order


def test_an_order_writes_its_confirmation_in_the_same_transaction(broker_down):
    order = place_order()
    email = OutboxEmail.objects.get(key=f"order-confirmation:{order.pk}")
    assert email.recipient == "ada@example.com"
    assert email.state == State.PENDING
    assert f"order {order.pk}" in email.body
    assert "2 x Teapot at 3.20" in email.body
    assert "Total: 6.40" in email.body
    assert email.message_id.startswith("<order-confirmation.")


def test_an_order_rolled_back_leaves_no_email(broker_down):
    product = ProductFactory(stock=5)
    customer = UserFactory(email="bob@example.com")

    def order_then_failure() -> None:
        with transaction.atomic(using="default"):
            order_create(customer=customer, items={product.pk: 1})
            raise RuntimeError("the surrounding transaction fails after the order")

    with pytest.raises(RuntimeError):
        order_then_failure()
    assert Order.objects.count() == 0
    assert OutboxEmail.objects.count() == 0


def test_a_customer_without_an_address_gets_no_email(broker_down):
    place_order(email="")
    assert OutboxEmail.objects.count() == 0


def test_an_order_publishes_once_and_does_not_retry_a_broken_broker(broker_dropping):
    # The request pays one connection attempt, not kombu's retry schedule (max_retries=0).
    order = place_order()
    assert broker_dropping.connections == 1
    assert OutboxEmail.objects.get(key=f"order-confirmation:{order.pk}").state == State.PENDING


def test_an_order_succeeds_while_the_broker_is_down_and_the_sweeper_sends_it(broker_down):
    order = place_order()
    email = OutboxEmail.objects.get(key=f"order-confirmation:{order.pk}")
    assert email.state == State.PENDING
    assert outbox_sweep(budget_seconds=5)["sent"] == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == f"Your order {order.pk} is confirmed"
    assert mail.outbox[0].extra_headers["Message-ID"] == email.message_id
    # The next sweep finds nothing due.
    assert outbox_sweep(budget_seconds=5)["due"] == 0
    assert len(mail.outbox) == 1
