"""Reads for reports. A report's own row comes from the primary (its status changes while the
customer polls it); the orders a report aggregates come from the replica, in chunks."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial

from django.db.models import Exists, OuterRef, Q, QuerySet

from core import db
from core.db_router import PRIMARY
from core.orm import one_or_none
from reports.models import Report
from shop.models import Order, OrderItem


def report_get(*, owner_id: int, report_id: int) -> Report | None:
    """Another customer's report is None, exactly like a missing one."""
    return one_or_none(Report.objects.using(PRIMARY).filter(pk=report_id, owner_id=owner_id))


@dataclass(frozen=True)
class Line:
    product_id: int
    product_name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class OrderLines:
    order_id: int
    created_at: datetime
    lines: list[Line]


def _bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    # Whole UTC days, date_to included (the last day of the calendar has no day after it).
    start = datetime.combine(date_from, time.min, tzinfo=UTC)
    if date_to == date.max:
        return start, datetime.max.replace(tzinfo=UTC)
    return start, datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)


def _orders(
    alias: str, date_from: date, date_to: date, product_id: int | None, customer_id: int | None
) -> QuerySet[Order]:
    start, end = _bounds(date_from, date_to)
    orders = Order.objects.using(alias).filter(
        status=Order.Status.PLACED, created_at__gte=start, created_at__lt=end
    )
    if customer_id is not None:
        orders = orders.filter(customer_id=customer_id)
    if product_id is not None:
        with_product = OrderItem.objects.using(alias).filter(
            order_id=OuterRef("pk"), product_id=product_id
        )
        orders = orders.filter(Exists(with_product))
    return orders


def report_order_count(
    *, date_from: date, date_to: date, product_id: int | None, customer_id: int | None
) -> int:
    """How many orders the report will read: the denominator of its progress. customer_id:
    only that customer's orders; None: every customer's."""
    return db.read(
        lambda alias: _orders(alias, date_from, date_to, product_id, customer_id).count()
    )


def report_order_chunks(
    *,
    date_from: date,
    date_to: date,
    product_id: int | None,
    customer_id: int | None,
    chunk_size: int,
) -> Iterator[list[OrderLines]]:
    """The range's orders with their lines, oldest first, `chunk_size` orders per query.

    Keyset pagination on (created_at, id): each chunk starts after the last (created_at, id) of
    the previous one, so every query is an index range scan of shop_order.created_at plus an
    incremental sort on id among equal timestamps, and costs the same on the last chunk as on
    the first (an OFFSET would rescan everything before it). Not a server-side cursor: PgBouncer
    in transaction mode gives no session to hold one across fetches (settings:
    DISABLE_SERVER_SIDE_CURSORS), and one long transaction on the replica would hold back its
    vacuum. Each chunk is a separate query through core.db.read (the replica, or the primary
    while it is down); only one chunk is ever in memory.
    """
    after: tuple[datetime, int] | None = None
    while True:
        chunk = db.read(
            partial(
                _chunk,
                date_from=date_from,
                date_to=date_to,
                product_id=product_id,
                customer_id=customer_id,
                after=after,
                size=chunk_size,
            )
        )
        if not chunk:
            return
        yield chunk
        if len(chunk) < chunk_size:
            return
        after = (chunk[-1].created_at, chunk[-1].order_id)


def _chunk(
    alias: str,
    *,
    date_from: date,
    date_to: date,
    product_id: int | None,
    customer_id: int | None,
    after: tuple[datetime, int] | None,
    size: int,
) -> list[OrderLines]:
    orders = _orders(alias, date_from, date_to, product_id, customer_id)
    if after is not None:
        created_at, order_id = after
        # The >= is the index condition; the OR leaves out what came before, ties included.
        orders = orders.filter(created_at__gte=created_at).filter(
            Q(created_at__gt=created_at) | Q(pk__gt=order_id)
        )
    heads = list(orders.order_by("created_at", "pk").values_list("pk", "created_at")[:size])
    if not heads:
        return []
    items = OrderItem.objects.using(alias).filter(order_id__in=[pk for pk, _ in heads])
    if product_id is not None:
        items = items.filter(product_id=product_id)
    lines: dict[int, list[Line]] = {pk: [] for pk, _ in heads}
    rows = items.order_by("order_id", "product_id").values_list(
        "order_id", "product_id", "product_name", "quantity", "unit_price"
    )
    for order_id, pid, name, quantity, unit_price in rows:
        lines[order_id].append(Line(pid, name, quantity, unit_price))
    return [OrderLines(pk, created_at, lines[pk]) for pk, created_at in heads]
