"""core.orm on the test Postgres: one-statement get_or_create, and a relation answered from
rows the caller holds."""

import threading

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from core.orm import insert_unless_exists, related_cache_fill
from notifications.models import OutboxEmail
from shop.models import Order, OrderItem  # demo-shop
from tests.app.accounts.factories import UserFactory  # demo-shop
from tests.app.shop.factories import ProductFactory  # demo-shop


def email(key: str, subject: str) -> OutboxEmail:
    return OutboxEmail(key=key, recipient="a@example.com", subject=subject, body="", message_id=key)


@pytest.mark.django_db
def test_a_new_row_is_one_insert_and_an_existing_one_is_returned_unchanged():
    with CaptureQueriesContext(connections["default"]) as queries:
        first, created = insert_unless_exists(email("k", "1"), unique_field="key", using="default")
    assert created
    assert first.pk is not None
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    stored = OutboxEmail.objects.using("default").get(pk=first.pk)
    # Defaults and auto_now_add as save() would write them.
    assert (stored.state, stored.attempts, stored.created_at) == ("pending", 0, first.created_at)
    assert stored.created_at is not None
    again, created = insert_unless_exists(email("k", "2"), unique_field="key", using="default")
    assert not created
    assert (again.pk, again.subject) == (first.pk, "1")
    assert OutboxEmail.objects.using("default").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_transactions_inserting_one_key_leave_one_row_and_neither_fails():
    """The second waits for the first's commit, then returns its row: no IntegrityError."""
    inserted = threading.Event()
    results: dict[str, object] = {}

    def second() -> None:
        inserted.wait(10)
        try:
            with transaction.atomic():
                results["second"] = insert_unless_exists(
                    email("race", "second"), unique_field="key", using="default"
                )
        except Exception as exc:  # the failure is what the test reports
            results["second"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=second)
    thread.start()
    with transaction.atomic():
        row, created = insert_unless_exists(
            email("race", "first"), unique_field="key", using="default"
        )
        inserted.set()
        thread.join(1)  # the second is blocked on this transaction's row
        assert thread.is_alive()
    thread.join(10)
    assert created
    assert results["second"] == (row, False)
    assert list(OutboxEmail.objects.using("default").values_list("subject", flat=True)) == ["first"]


# demo-shop: begin
@pytest.mark.django_db
def test_a_filled_relation_answers_without_a_query_and_a_fresh_instance_still_reads():
    product = ProductFactory(name="Lamp")
    order = Order.objects.create(customer=UserFactory(), total=1)
    lines = OrderItem.objects.bulk_create([OrderItem(order=order, product=product, quantity=1,
                                                     unit_price=1)])  # fmt: skip
    related_cache_fill(order, relation="items", objects=lines)
    with CaptureQueriesContext(connections["default"]) as queries:
        assert [(i.pk, i.product.name) for i in order.items.all()] == [(lines[0].pk, "Lamp")]
    assert queries.captured_queries == []
    fresh = Order.objects.using("default").get(pk=order.pk)
    assert [i.pk for i in fresh.items.all()] == [lines[0].pk]


# demo-shop: end
