from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

# The most `stock` holds: a PositiveIntegerField's bound in Postgres.
MAX_STOCK = 2**31 - 1


class Product(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    stock = models.PositiveIntegerField(default=0)
    # +1 with every stock change, under the row lock: the Redis copy keeps the highest version,
    # so copies written out of commit order never roll it back (shop/stock.py).
    stock_version = models.PositiveBigIntegerField(default=0)
    hot = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="product_price_gte_0"),
        ]
        indexes = [
            # The storefront's "hot products" filter pages through a small subset.
            models.Index(fields=["id"], condition=models.Q(hot=True), name="product_hot_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        CANCELLED = "cancelled"

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLACED)
    # Wide enough for the largest order the API accepts: 50 lines x 1,000 x 99,999,999.99.
    total = models.DecimalField(max_digits=18, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # A client's retry of the same POST carries the same key and gets the first order back.
    # NULL, not "": orders without a key must not collide in the unique constraint below.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"], name="order_customer_idempotency_key"
            ),
        ]
        indexes = [
            # "My orders, newest first": the customer's list and its pagination.
            models.Index(
                fields=["customer", "-created_at", "-id"], name="order_customer_recent_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}"


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    # The name when ordered, like the unit price: an order, its replay and its email show what
    # was bought, whatever the catalogue calls the product later.
    product_name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="order_item_quantity_gte_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x product {self.product_id}"
