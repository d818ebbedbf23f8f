"""Reads. The router sends them to the replica."""

from typing import Any

from shop.models import Product


def product_get(*, product_id: int) -> Product | None:
    return Product.objects.filter(pk=product_id).first()


def product_to_dict(*, product: Product) -> dict[str, Any]:
    return {
        "id": product.pk,
        "name": product.name,
        "description": product.description,
        "price": str(product.price),
        "stock": product.stock,
        "hot": product.hot,
    }
