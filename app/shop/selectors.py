"""Reads. They go to the replica, except a customer's own data right after they wrote it, and
everything while the replica is down (core.db). Each returns models, evaluated inside core.db's
read so that its fallback covers every query; the schemas (shop/schemas.py) shape the answers."""

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet

from core import db
from core.db_router import PRIMARY
from core.orm import aone_or_none, one_or_none
from shop.models import Order, OrderItem, Product
from shop.stock import stock_cache_get
from shop.upstream import price_get, recommendations_get


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    page: int
    page_size: int
    count: int


def product_get(*, product_id: int) -> Product | None:
    def query(alias: str) -> Product | None:
        return one_or_none(Product.objects.using(alias).filter(pk=product_id))

    return db.read(query, primary_decides_missing=True)


def product_list(
    *, page: int, page_size: int, hot: bool | None = None, from_primary: bool = False
) -> Page[Product]:
    """A page of the catalogue. from_primary: skip the replica, which may lag a write just made
    (the cached list fills a page missed right after a product write this way, shop/cache.py)."""

    def query(alias: str) -> Page[Product]:
        products: QuerySet[Product] = Product.objects.using(alias).order_by("pk")
        if hot is not None:
            products = products.filter(hot=hot)
        offset = (page - 1) * page_size
        rows = list(products[offset : offset + page_size])
        return Page(items=rows, page=page, page_size=page_size, count=products.count())

    return query(PRIMARY) if from_primary else db.read(query)


@dataclass(frozen=True)
class ProductDetail:
    """The product page: the product, its live stock and the upstream services' answers. Any
    other attribute is the product's (ProductDetailOut reads id, name, price... through it)."""

    product: Product
    stock: int
    pricing_service_price: Decimal | None
    recommendations: list[int]

    def __getattr__(self, name: str) -> Any:
        # Only for names the dataclass lacks; a half-built instance (copy, pickle) has none.
        if name == "product" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.product, name)


async def product_detail_get(*, product_id: int) -> ProductDetail | None:
    """The product page: database, live stock and two upstream services, all at once.

    Latency is that of the slowest call, not their sum; each upstream has its own timeout
    and a fallback, so a slow or failing service degrades the page instead of failing it.
    The pricing service's figure is shown beside the catalogue price, never as `price`.
    """
    product, stock, price, recommendations = await asyncio.gather(
        _product_aget(product_id),
        stock_cache_get(product_id=product_id),
        price_get(product_id=product_id),
        recommendations_get(product_id=product_id),
    )
    if product is None:
        return None
    # product.price stays the catalogue's: the price an order charges (services.order_create).
    return ProductDetail(
        product=product,
        stock=stock if stock is not None else product.stock,
        pricing_service_price=price.price if price else None,
        recommendations=list(recommendations.product_ids) if recommendations else [],
    )


async def _product_aget(product_id: int) -> Product | None:
    async def query(alias: str) -> Product | None:
        return await aone_or_none(Product.objects.using(alias).filter(pk=product_id))

    return await db.aread(query, primary_decides_missing=True)


def _orders(alias: str, customer_id: int) -> QuerySet[Order]:
    items = OrderItem.objects.using(alias).order_by("pk")
    return (
        Order.objects.using(alias)
        .filter(customer_id=customer_id)
        .prefetch_related(Prefetch("items", queryset=items))
    )


def order_list(*, customer_id: int, page: int, page_size: int) -> Page[Order]:
    """Three queries whatever the page size: orders, their items, the count."""

    def query(alias: str) -> Page[Order]:
        orders = _orders(alias, customer_id)
        offset = (page - 1) * page_size
        rows = list(orders[offset : offset + page_size])
        count = Order.objects.using(alias).filter(customer_id=customer_id).count()
        return Page(items=rows, page=page, page_size=page_size, count=count)

    return db.read(query, user_id=customer_id)


def order_get(*, customer_id: int, order_id: int) -> Order | None:
    """Another customer's order is None, exactly like a missing one."""

    def query(alias: str) -> Order | None:
        return one_or_none(_orders(alias, customer_id).filter(pk=order_id))

    return db.read(query, user_id=customer_id)
