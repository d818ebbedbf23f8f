"""Reads. They go to the replica, except a customer's own data right after they wrote it, and
everything while the replica is down (core.db)."""

import asyncio
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Prefetch, QuerySet

from core import db
from core.db_router import PRIMARY
from shop.models import Order, OrderItem, Product
from shop.services import PRODUCTS_WRITTEN_KEY, products_version
from shop.stock import stock_cache_get
from shop.upstream import price_get, recommendations_get


@dataclass(frozen=True)
class Page:
    items: list[Any]
    page: int
    page_size: int
    count: int


def product_to_dict(*, product: Product) -> dict[str, Any]:
    return {
        "id": product.pk,
        "name": product.name,
        "description": product.description,
        "price": str(product.price),
        "stock": product.stock,
        "hot": product.hot,
    }


def product_get(*, product_id: int) -> Product | None:
    def query(alias: str) -> Product | None:
        return Product.objects.using(alias).filter(pk=product_id).first()

    return db.read(query, primary_decides_missing=True)


def product_list(*, page: int, page_size: int, hot: bool | None = None) -> dict[str, Any]:
    """A page of the catalogue, cached in Redis until the TTL or the next product write.

    A page missed soon after a write is filled from the primary: a lagging replica would put
    the old rows under the new version for the whole TTL.
    """
    version = products_version()
    key = f"products:v{version}:hot={hot}:p={page}:s={page_size}"
    cached: dict[str, Any] | None = cache.get(key)
    if cached is not None:
        return cached

    def query(alias: str) -> dict[str, Any]:
        products: QuerySet[Product] = Product.objects.using(alias).order_by("pk")
        if hot is not None:
            products = products.filter(hot=hot)
        offset = (page - 1) * page_size
        rows = [product_to_dict(product=p) for p in products[offset : offset + page_size]]
        return {"items": rows, "page": page, "page_size": page_size, "count": products.count()}

    result = query(PRIMARY) if cache.get(PRODUCTS_WRITTEN_KEY) else db.read(query)
    cache.set(key, result)
    return result


async def product_detail_get(*, product_id: int) -> dict[str, Any] | None:
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
    detail = product_to_dict(product=product)
    detail["stock"] = stock if stock is not None else product.stock
    # detail["price"] stays the catalogue's: the price an order charges (services.order_create).
    detail["pricing_service_price"] = str(price.price) if price else None
    detail["recommendations"] = list(recommendations.product_ids) if recommendations else []
    return detail


async def _product_aget(product_id: int) -> Product | None:
    async def query(alias: str) -> Product | None:
        return await Product.objects.using(alias).filter(pk=product_id).afirst()

    return await db.aread(query, primary_decides_missing=True)


def _orders(alias: str, customer_id: int) -> QuerySet[Order]:
    items = OrderItem.objects.using(alias).select_related("product").order_by("pk")
    return (
        Order.objects.using(alias)
        .filter(customer_id=customer_id)
        .prefetch_related(Prefetch("items", queryset=items))
    )


def order_to_dict(*, order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "status": order.status,
        "total": str(order.total),
        "created_at": order.created_at.isoformat(),
        "items": [
            {
                "product_id": item.product_id,
                "product_name": item.product.name,
                "quantity": item.quantity,
                "unit_price": str(item.unit_price),
            }
            for item in order.items.all()
        ],
    }


def order_list(*, customer_id: int, page: int, page_size: int) -> Page:
    """Three queries whatever the page size: orders, their items with products, the count."""

    def query(alias: str) -> Page:
        orders = _orders(alias, customer_id)
        offset = (page - 1) * page_size
        rows = [order_to_dict(order=o) for o in orders[offset : offset + page_size]]
        count = Order.objects.using(alias).filter(customer_id=customer_id).count()
        return Page(items=rows, page=page, page_size=page_size, count=count)

    return db.read(query, user_id=customer_id)


def order_get(*, customer_id: int, order_id: int) -> dict[str, Any] | None:
    """Another customer's order is None, exactly like a missing one."""

    def query(alias: str) -> dict[str, Any] | None:
        order = _orders(alias, customer_id).filter(pk=order_id).first()
        return order_to_dict(order=order) if order else None

    return db.read(query, user_id=customer_id)
