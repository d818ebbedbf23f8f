"""Seeds realistic data fast: customers and products through the ORM, orders and their items
generated inside Postgres (INSERT ... SELECT generate_series), in batches on the primary.

Fast at any count: the rows never travel between Django and the database.
Orders are numbered g = 1..count in one series; every product with g is computed in bigint (g
times a prime overflows 32 bits past about 271,000), so one call seeds any count shop_order's
bigint ids can hold. Each batch commits on its own: a failure says how many are committed.
"""

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction

from core.db_router import PRIMARY
from shop.cache import product_list_invalidate
from shop.models import Product

BATCH = 50_000  # orders per statement: each batch commits well inside a minute

User = get_user_model()

# The user table from the model (settings.AUTH_USER_MODEL), never from input.
ORDERS_SQL = f"""
INSERT INTO shop_order (customer_id, status, total, created_at, request_fingerprint)
SELECT customers[1 + ((g::bigint * 7919) %% cardinality(customers))::integer], 'placed', 0,
       coalesce(%(end)s::timestamptz, now())
         - ((g::bigint * 104729) %% (%(days)s * 86400)) * interval '1 second', ''
FROM generate_series(%(first)s, %(last)s) AS g,
     (SELECT array_agg(id) AS customers FROM {User._meta.db_table}
      WHERE username LIKE 'seed-%%') AS c
"""  # noqa: S608

ITEMS_SQL = """
INSERT INTO shop_orderitem (order_id, product_id, product_name, quantity, unit_price)
SELECT o.id, p.id, p.name, 1 + (o.id + j) %% 3, p.price
FROM shop_order AS o
CROSS JOIN LATERAL generate_series(0, o.id %% 3) AS j
JOIN LATERAL (
  SELECT products[1 + (o.id * 31 + j * 17) %% cardinality(products)] AS pid
  FROM (SELECT array_agg(id ORDER BY id) AS products FROM shop_product) AS a
) AS pick ON true
JOIN shop_product AS p ON p.id = pick.pid
WHERE o.id > %(after)s
"""

TOTALS_SQL = """
UPDATE shop_order AS o SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total FROM shop_orderitem
      WHERE order_id > %(after)s GROUP BY order_id) AS s
WHERE o.id = s.order_id
"""


class Command(BaseCommand):
    help = "Create seed customers, products and orders (idempotent for customers/products)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=200)
        parser.add_argument("--products", type=int, default=100)
        parser.add_argument("--orders", type=int, default=10_000)
        parser.add_argument(
            "--days", type=int, default=365, help="spread orders over this many days"
        )
        parser.add_argument("--end", default=None, help="newest order's timestamp (default: now)")

    def handle(self, *args: Any, **options: Any) -> None:
        self._customers(options["customers"])
        self._products(options["products"])
        created = self._orders(options["orders"], options["days"], options["end"])
        self.stdout.write(f"seeded {created} orders")

    def _customers(self, count: int) -> None:
        existing = User.objects.using(PRIMARY).filter(username__startswith="seed-").count()
        password = make_password(None)  # unusable: seed customers never log in with a password
        User.objects.using(PRIMARY).bulk_create(
            User(username=f"seed-{i}", email=f"seed-{i}@example.com", password=password)
            for i in range(existing, count)
        )

    def _products(self, count: int) -> None:
        existing = Product.objects.using(PRIMARY).count()
        if count <= existing:
            return
        Product.objects.using(PRIMARY).bulk_create(
            Product(
                name=f"Product {i}",
                description=f"Seeded product number {i}",
                price=Decimal(100 + (i * 37) % 9900) / 100,
                stock=1_000_000,
                hot=i % 10 == 0,
            )
            for i in range(existing, count)
        )
        # A write like any other: the cached list shows the new products on its next read.
        product_list_invalidate()

    def _orders(self, count: int, days: int, end: str | None) -> int:
        done = 0
        while done < count:
            size = min(BATCH, count - done)
            try:
                self._batch(done, size, days, end)
            except Exception as exc:
                # The earlier batches stay committed: say so, so a rerun asks only for the rest.
                raise CommandError(
                    f"seeded {done} of {count} orders (committed) before failing: "
                    f"{type(exc).__name__}: {str(exc).strip()}"
                ) from exc
            done += size
        return done

    def _batch(self, done: int, size: int, days: int, end: str | None) -> None:
        """Orders done + 1 .. done + size of the series, with their items and totals."""
        with transaction.atomic(using=PRIMARY), connections[PRIMARY].cursor() as cursor:
            # Bulk work outruns the app role's 15s statement_timeout; lift it for this
            # transaction only (SET LOCAL is safe under PgBouncer's transaction pooling).
            cursor.execute("SET LOCAL statement_timeout = '10min'")
            cursor.execute("SELECT coalesce(max(id), 0) FROM shop_order")
            row = cursor.fetchone()
            after = int(row[0]) if row else 0
            cursor.execute(
                ORDERS_SQL, {"first": done + 1, "last": done + size, "days": days, "end": end}
            )
            cursor.execute(ITEMS_SQL, {"after": after})
            cursor.execute(TOTALS_SQL, {"after": after})
