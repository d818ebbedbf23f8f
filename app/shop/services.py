"""Writes. Every one runs on the primary, inside a transaction."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core.db import recent_write_mark
from core.db_router import PRIMARY
from core.orm import one_or_none, related_cache_fill, values_update
from shop.cache import product_list_invalidate
from shop.errors import (
    ConflictingStockChange,
    IdempotencyConflict,
    InvalidProduct,
    OutOfStock,
    PriceChanged,
    ProductNotFound,
    UnknownProducts,
)
from shop.models import Order, OrderItem, Product
from shop.notifications import order_confirmation_create
from shop.stock import stock_cache_set

if TYPE_CHECKING:
    # The type only: at run time the user model is settings.AUTH_USER_MODEL (get_user_model()).
    from accounts.models import User


def _validated(product: Product, *, stock_delta: int | None = None) -> None:
    """full_clean() as a 400 naming the field as the request named it, never a 500. A stock
    moved by `stock_delta` is named so, with the count it would leave: the rule is the
    stock's, the value sent is not what breaks it."""
    try:
        product.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        rule = " ".join(messages)
        if field == "stock" and stock_delta:
            field = "stock_delta"
            rule = f"{stock_delta:+d} would leave stock at {product.stock}: {rule}"
        raise InvalidProduct(f"{field}: {rule}", field=field) from exc


@transaction.atomic(using=PRIMARY)
def product_create(
    *, name: str, price: Decimal, stock: int, description: str = "", hot: bool = False
) -> Product:
    product = Product(name=name, price=price, stock=stock, description=description, hot=hot)
    _validated(product)
    product.save(using=PRIMARY)
    transaction.on_commit(product_list_invalidate, using=PRIMARY)
    return product


@transaction.atomic(using=PRIMARY)
def product_update(*, product_id: int, stock_delta: int | None = None, **fields: object) -> Product:
    """Changes only the given fields, on the row locked for the transaction.

    Orders take stock meanwhile, so stock moves explicitly: `stock_delta` adds to (or takes
    from) the current count; `stock` sets an absolute count (a stock-take) and overwrites
    whatever was sold since the caller looked. A name or price change never touches stock.
    """
    if stock_delta is not None and "stock" in fields:
        raise ConflictingStockChange(
            "Send either stock (an absolute count) or stock_delta (a change), not both.",
            field="stock_delta",
        )
    product = one_or_none(Product.objects.using(PRIMARY).select_for_update().filter(pk=product_id))
    if product is None:
        raise ProductNotFound(f"No product {product_id}.")
    for name, value in fields.items():
        setattr(product, name, value)
    if stock_delta:
        if product.stock + stock_delta < 0:
            raise OutOfStock(
                f"stock_delta {stock_delta} would leave product {product_id} below zero:"
                f" it has {product.stock}.",
                field="stock_delta",
            )
        product.stock += stock_delta
    changed = set(fields) | ({"stock"} if stock_delta else set())
    if not changed:
        return product
    _validated(product, stock_delta=stock_delta)
    if "stock" in changed:
        product.stock_version += 1
        changed.add("stock_version")
        stocks = {product.pk: (product.stock_version, product.stock)}
        transaction.on_commit(lambda: stock_cache_set(stocks=stocks), using=PRIMARY)
    product.save(using=PRIMARY, update_fields=sorted(changed | {"updated_at"}))
    transaction.on_commit(product_list_invalidate, using=PRIMARY)
    return product


def _fingerprint(items: dict[int, int]) -> str:
    return hashlib.sha256(json.dumps(sorted(items.items())).encode()).hexdigest()


def order_create(
    *,
    customer: User,
    items: dict[int, int],
    idempotency_key: str | None = None,
    expected_prices: dict[int, Decimal] | None = None,
) -> tuple[Order, bool]:
    """Places an order for {product_id: quantity}. Returns (order, created).

    expected_prices: {product_id: the unit price the client showed}. Any that differs from the
    catalogue's price now is a PriceChanged conflict and nothing is placed: the page may have
    come from a replica that had not replayed a price change yet.

    A retry with the same Idempotency-Key returns the first order (created=False); the same key
    with different items is a conflict. Rows are locked in product id order, so concurrent
    orders over overlapping products queue on the locks instead of deadlocking.
    """
    fingerprint = _fingerprint(items)
    if idempotency_key:
        existing = _order_for_key(customer=customer, key=idempotency_key, fingerprint=fingerprint)
        if existing is not None:
            return existing, False
    try:
        order = _order_place(
            customer=customer,
            items=items,
            key=idempotency_key,
            fingerprint=fingerprint,
            expected_prices=expected_prices or {},
        )
    except IntegrityError:
        # Two requests with one key raced: the other committed first; its order is the answer.
        if not idempotency_key:
            raise
        existing = _order_for_key(customer=customer, key=idempotency_key, fingerprint=fingerprint)
        if existing is None:
            raise
        return existing, False
    return order, True


def _order_for_key(*, customer: User, key: str, fingerprint: str) -> Order | None:
    order = one_or_none(
        Order.objects.using(PRIMARY)
        .filter(customer=customer, idempotency_key=key)
        .prefetch_related("items__product")
    )
    if order is not None and order.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was used for a different order.", field="Idempotency-Key"
        )
    return order


@transaction.atomic(using=PRIMARY)
def _order_place(
    *,
    customer: User,
    items: dict[int, int],
    key: str | None,
    fingerprint: str,
    expected_prices: dict[int, Decimal],
) -> Order:
    products = list(
        Product.objects.using(PRIMARY).select_for_update().filter(pk__in=items).order_by("pk")
    )
    missing = sorted(set(items) - {p.pk for p in products})
    if missing:
        raise UnknownProducts(f"No such products: {missing}", field="items")
    changed = {
        p.pk: str(p.price)
        for p in products
        if p.pk in expected_prices and expected_prices[p.pk] != p.price
    }
    if changed:
        raise PriceChanged(f"Prices changed; now: {changed}", field="items")
    short = [p.pk for p in products if p.stock < items[p.pk]]
    if short:
        raise OutOfStock(f"Not enough stock for products {short}", field="items")

    for product in products:
        product.stock -= items[product.pk]
        product.stock_version += 1
    values_update(products, fields=["stock", "stock_version"], using=PRIMARY)
    total = sum((p.price * items[p.pk] for p in products), Decimal("0"))
    order = Order.objects.using(PRIMARY).create(
        customer=customer, total=total, idempotency_key=key, request_fingerprint=fingerprint
    )
    lines = OrderItem.objects.using(PRIMARY).bulk_create(
        OrderItem(
            order=order, product=p, product_name=p.name, quantity=items[p.pk], unit_price=p.price
        )
        for p in products
    )
    # Everything the answer and the email show, from the rows just written and locked: once
    # the order is committed, a database that stops answering must not turn its 201 into an
    # error, and a read would only return them.
    related_cache_fill(order, relation="items", objects=lines)
    # Transactional outbox: the confirmation email commits with the order, or neither does.
    order_confirmation_create(order=order)
    stocks = {p.pk: (p.stock_version, p.stock) for p in products}
    transaction.on_commit(lambda: stock_cache_set(stocks=stocks), using=PRIMARY)
    transaction.on_commit(product_list_invalidate, using=PRIMARY)
    transaction.on_commit(lambda: recent_write_mark(user_id=customer.pk), using=PRIMARY)
    return order
