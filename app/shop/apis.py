"""The shop's HTTP API. Thin: parse, authorise, call a service or selector, shape the answer."""

from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status
from ninja.errors import HttpError
from ninja.params.functions import Header

from accounts.auth import customer_auth, staff_auth
from core.schemas import PageQuery, PathId, errors
from shop import cache, selectors, services
from shop.models import Order, Product
from shop.schemas import (
    OrderIn,
    OrderOut,
    OrderPage,
    ProductDetailOut,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    ProductQuery,
)

router = Router(tags=["shop"])


def _customer_id(request: HttpRequest) -> int:
    # The auth classes guarantee an authenticated user on every route that calls this.
    return int(request.user.pk)  # type: ignore[arg-type]


IDEMPOTENCY_KEY: Any = Header(
    None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9_.:-]+$",
    description="Retrying a POST with the same key returns the first order, not a second one.",
)


@router.get("/products", response={200: ProductPage, **errors(400)}, url_name="products")
async def product_list(request: HttpRequest, query: Query[ProductQuery]) -> HttpResponse:
    # The cached bytes are ProductPage's own rendering (shop/cache.py): answered as they are.
    body = await cache.product_page_aget(page=query.page, page_size=query.page_size, hot=query.hot)
    return HttpResponse(body, content_type=cache.CONTENT_TYPE)


@router.post(
    "/products",
    auth=staff_auth,
    response={201: ProductOut, **errors(400, 401, 403)},
    url_name="products",
)
def product_create(request: HttpRequest, payload: ProductIn) -> Status[Any]:
    return Status(201, services.product_create(**payload.dict()))


@router.patch(
    "/products/{product_id}",
    auth=staff_auth,
    url_name="product",
    response={200: ProductOut, **errors(400, 401, 403, 404, 409)},
    description="Changes only the fields sent; orders placed meanwhile keep their stock."
    " `stock_delta` moves the count relative to its current value (409 if it would go below"
    " zero); `stock` sets it outright, overwriting concurrent sales. Not both at once.",
)
def product_update(request: HttpRequest, product_id: PathId, payload: ProductPatch) -> Product:
    changes = payload.dict(exclude_unset=True, exclude_none=True)
    return services.product_update(product_id=product_id, **changes)


@router.get(
    "/products/{product_id}",
    response={200: ProductDetailOut, **errors(400, 404)},
    url_name="product",
)
async def product_detail(request: HttpRequest, product_id: PathId) -> selectors.ProductDetail:
    detail = await selectors.product_detail_get(product_id=product_id)
    if detail is None:
        raise HttpError(404, f"No product {product_id}.")
    return detail


@router.post(
    "/orders",
    auth=customer_auth,
    url_name="orders",
    # 403: a session without its CSRF token (tests/app/config/test_openapi.py).
    response={201: OrderOut, 200: OrderOut, **errors(400, 401, 403, 404, 409)},
)
def order_create(
    request: HttpRequest,
    payload: OrderIn,
    response: HttpResponse,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
) -> Status[Any]:
    items: dict[int, int] = {}
    expected: dict[int, Decimal] = {}
    for item in payload.items:
        items[item.product_id] = items.get(item.product_id, 0) + item.quantity
        if item.expected_unit_price is not None:
            expected[item.product_id] = item.expected_unit_price
    order, created = services.order_create(
        customer=request.user,  # type: ignore[arg-type]
        items=items,
        idempotency_key=idempotency_key,
        expected_prices=expected,
    )
    if not created:
        response["Idempotent-Replayed"] = "true"
    return Status(201 if created else 200, order)


@router.get(
    "/orders", auth=customer_auth, response={200: OrderPage, **errors(400, 401)}, url_name="orders"
)
def order_list(request: HttpRequest, query: Query[PageQuery]) -> selectors.Page[Order]:
    return selectors.order_list(
        customer_id=_customer_id(request), page=query.page, page_size=query.page_size
    )


@router.get(
    "/orders/{order_id}", auth=customer_auth, response={200: OrderOut, **errors(400, 401, 404)}
)
def order_detail(request: HttpRequest, order_id: PathId) -> Order:
    order = selectors.order_get(customer_id=_customer_id(request), order_id=order_id)
    if order is None:
        raise HttpError(404, f"No order {order_id}.")
    return order
