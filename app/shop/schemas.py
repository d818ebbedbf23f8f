from typing import Annotated

from ninja import Field, Schema
from pydantic import BeforeValidator, StringConstraints

from core.schemas import (
    CachedPageQuery,
    InputSchema,
    Money,
    MoneyOut,
    PatchSchema,
    PositiveId,
    Timestamp,
    json_integer,
    no_nul,
)
from shop.models import MAX_STOCK

Stock = Annotated[int, Field(ge=0, le=MAX_STOCK), BeforeValidator(json_integer)]
StockDelta = Annotated[
    int,
    Field(
        ge=-MAX_STOCK,
        le=MAX_STOCK,
        description="Added to the current count (negative takes away), whatever was sold since"
        " you read it. Not together with stock.",
    ),
    BeforeValidator(json_integer),
]
Quantity = Annotated[int, Field(ge=1, le=1000), BeforeValidator(json_integer)]
# As no_nul's pattern, and at least one character that shows: a name of spaces, controls or
# invisible marks (zero-width, joiners, fillers, Braille blank) names nothing. The set is
# spelled out rather than \s, which the validator (Rust) and schema-driven clients (Python,
# JavaScript) each read differently; in the pattern, so the schema says it too.
_UNSEEN = (
    r"\x00-\x20\x7f-\xa0\xad\u034f\u061c\u115f\u1160\u1680\u17b4\u17b5\u180b-\u180f"
    r"\u2000-\u200f\u2028-\u202f\u205f-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
NAME_PATTERN = rf"^[^\x00]*[^{_UNSEEN}][^\x00]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NAME_PATTERN)]
Description = Annotated[str, no_nul(max_length=5000)]


class ProductIn(InputSchema):
    name: Name
    description: Description = ""
    price: Money
    stock: Stock
    hot: bool = False


class ProductPatch(PatchSchema):
    name: Name | None = None
    description: Description | None = None
    price: Money | None = None
    stock: Stock | None = Field(
        None,
        description="Sets an absolute count (a stock-take): overwrites whatever was sold since"
        " you read it. To receive or write off goods, send stock_delta instead.",
    )
    stock_delta: StockDelta | None = None
    hot: bool | None = None


class ProductOut(Schema):
    id: int
    name: str
    description: str
    price: MoneyOut
    stock: int
    hot: bool


class ProductDetailOut(ProductOut):
    # `price` is the catalogue's, the one POST /api/orders charges, whatever the pricing service
    # says; its figure is shown apart so the page never quotes a price the order does not charge.
    price: MoneyOut = Field(description="The price an order charges now (the catalogue's).")
    pricing_service_price: MoneyOut | None = Field(
        description=(
            "The pricing service's figure, for information only: orders charge `price`. "
            "null when the service failed, was too slow or answered something malformed."
        )
    )
    recommendations: list[int]


class ProductPage(Schema):
    items: list[ProductOut]
    page: int
    page_size: int
    count: int


class ProductQuery(CachedPageQuery):
    hot: bool | None = None


class OrderItemIn(InputSchema):
    product_id: PositiveId
    quantity: Quantity
    expected_unit_price: Money | None = Field(
        None,
        description=(
            "The price the client showed for this product. If the catalogue's price is now "
            "another (the page may come from a replica that lags a price change), the order is "
            "a 409 price_changed naming the current prices, and nothing is charged."
        ),
    )


class OrderIn(InputSchema):
    # Lines naming the same product are added up (the service sees one line per product).
    items: list[OrderItemIn] = Field(min_length=1, max_length=50)


class OrderItemOut(Schema):
    product_id: int
    product_name: str
    quantity: int
    unit_price: MoneyOut


class OrderOut(Schema):
    id: int
    status: str
    total: MoneyOut
    created_at: Timestamp
    items: list[OrderItemOut]


class OrderPage(Schema):
    items: list[OrderOut]
    page: int
    page_size: int
    count: int
