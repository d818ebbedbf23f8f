"""core.orm on the test Postgres: one-statement get_or_create, and a relation answered from
rows the caller holds."""

import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.orm import (
    aone_or_none,
    insert_unless_exists,
    one_or_none,
    related_cache_fill,
    update_returning,
    values_update,
)
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


@pytest.mark.django_db
def test_update_returning_changes_what_update_would_and_returns_those_rows_in_one_statement():
    first, _ = insert_unless_exists(email("a", "1"), unique_field="key", using="default")
    insert_unless_exists(email("b", "1"), unique_field="key", using="default")
    pending = OutboxEmail.objects.filter(pk=first.pk, state="pending")
    with CaptureQueriesContext(connections["default"]) as queries:
        [row] = update_returning(
            pending, using="default", state="sending", attempts=F("attempts") + 1
        )
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    assert (row.pk, row.state, row.attempts, row.subject) == (first.pk, "sending", 1, "1")
    assert row.created_at == first.created_at
    # Nothing matches any more: nothing changed, nothing returned.
    assert update_returning(pending, using="default", state="sent") == []
    stored = dict(OutboxEmail.objects.using("default").values_list("key", "state"))
    assert stored == {"a": "sending", "b": "pending"}


@pytest.mark.django_db
def test_values_update_writes_each_objects_fields_to_its_row_in_one_statement():
    rows = [
        insert_unless_exists(email(key, key), unique_field="key", using="default")[0]
        for key in ("a", "b", "c")
    ]
    rows[0].attempts, rows[0].last_error, rows[0].handed_off_at = 7, "x", timezone.now()
    rows[1].attempts, rows[1].last_error, rows[1].handed_off_at = 40000, "", None
    rows[1].subject = "not written: not a field named"
    with CaptureQueriesContext(connections["default"]) as queries:
        values_update(rows[:2], fields=["attempts", "last_error", "handed_off_at"], using="default")
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    stored = {
        e.key: (e.attempts, e.last_error, e.handed_off_at, e.subject)
        for e in OutboxEmail.objects.using("default")
    }
    assert stored == {
        "a": (7, "x", rows[0].handed_off_at, "a"),
        "b": (40000, "", None, "b"),
        "c": (0, "", None, "c"),
    }


@pytest.mark.django_db
def test_update_returning_with_a_filter_nothing_can_match_changes_nothing():
    assert (
        update_returning(OutboxEmail.objects.filter(pk__in=[]), using="default", attempts=1) == []
    )


@pytest.mark.django_db
def test_values_update_refuses_an_object_twice_and_no_field():
    row, _ = insert_unless_exists(email("a", "1"), unique_field="key", using="default")
    with pytest.raises(ValueError, match="twice"):
        values_update([row, row], fields=["attempts"], using="default")
    with pytest.raises(ValueError, match="no field"):
        values_update([row], fields=[], using="default")


# demo-shop: begin
@pytest.mark.django_db
def test_update_returning_refuses_a_filter_across_a_join():
    with pytest.raises(ValueError, match="own table"):
        update_returning(
            Order.objects.filter(customer__username="x"), using="default", status="cancelled"
        )


# demo-shop: end


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


@pytest.mark.django_db
@pytest.mark.parametrize("fetch", [one_or_none, async_to_sync(aone_or_none)], ids=["sync", "async"])
def test_one_or_none_answers_a_unique_lookup_without_ordering_and_refuses_two_rows(fetch):
    """first() would ORDER BY the model's ordering (or its key): compiled for nothing when a
    unique key decides the row."""
    row = OutboxEmail.objects.using("default").create(
        key="a", recipient="a@example.com", subject="s", body="", message_id="a"
    )
    OutboxEmail.objects.using("default").create(
        key="b", recipient="b@example.com", subject="s", body="", message_id="b"
    )
    emails = OutboxEmail.objects.using("default")
    with CaptureQueriesContext(connections["default"]) as queries:
        assert fetch(emails.filter(key="a")) == row
    [query] = queries.captured_queries
    assert "ORDER BY" not in query["sql"]
    assert query["sql"].endswith("LIMIT 2")
    assert fetch(emails.filter(key="c")) is None
    with pytest.raises(OutboxEmail.MultipleObjectsReturned):
        fetch(emails.filter(subject="s"))
