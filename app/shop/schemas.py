from decimal import Decimal
from typing import Annotated

from ninja import Field, Schema
from pydantic import field_validator

from core.schemas import PageQuery

PositiveId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Price = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]


class ProductIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    price: Price
    stock: int = Field(ge=0, le=2**31 - 1)
    hot: bool = False


class ProductPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    price: Price | None = None
    stock: int | None = Field(None, ge=0, le=2**31 - 1)
    hot: bool | None = None


class ProductOut(Schema):
    id: int
    name: str
    description: str
    price: str
    stock: int
    hot: bool


class ProductDetailOut(ProductOut):
    price_source: str
    recommendations: list[int]


class ProductPage(Schema):
    items: list[ProductOut]
    page: int
    page_size: int
    count: int


class ProductQuery(PageQuery):
    hot: bool | None = None


class OrderItemIn(Schema):
    product_id: PositiveId
    quantity: int = Field(ge=1, le=1000)


class OrderIn(Schema):
    items: list[OrderItemIn] = Field(min_length=1, max_length=50)

    @field_validator("items")
    @classmethod
    def one_line_per_product(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        ids = [item.product_id for item in items]
        if len(ids) != len(set(ids)):
            raise ValueError("each product may appear once; add up the quantities")
        return items


class OrderItemOut(Schema):
    product_id: int
    product_name: str
    quantity: int
    unit_price: str


class OrderOut(Schema):
    id: int
    status: str
    total: str
    created_at: str
    items: list[OrderItemOut]


class OrderPage(Schema):
    items: list[OrderOut]
    page: int
    page_size: int
    count: int
