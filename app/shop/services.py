"""Writes. Each runs on the primary (the router sends every write there)."""

from decimal import Decimal

from django.db import transaction

from shop.models import Product


@transaction.atomic
def product_create(*, name: str, price: Decimal, stock: int, description: str = "") -> Product:
    product = Product(name=name, price=price, stock=stock, description=description)
    product.full_clean()
    product.save()
    return product
