"""`make backup`, then the volumes destroyed (this test's own compose project only), then
`make restore` into the fresh, empty stack: every order back with its id and total."""

import uuid
from pathlib import Path

from tests.support import ROOT, run, wait_until

ORDERS = "SELECT coalesce(string_agg(id || ':' || total, ',' ORDER BY id), '') FROM shop_order"


def make(stack, *args: str) -> str:
    return run("make", "-s", *args, cwd=ROOT, env=stack.env(), timeout=300).stdout.strip()


def product_and_customer(stack, name: str) -> tuple[int, dict[str, str]]:
    """A product with 100 in stock, and a new customer's token."""
    staff = stack.token(f"{name}-staff", staff=True)
    product = stack.post_json(
        "/api/products", {"name": name, "price": "3.35", "stock": 100}, headers=staff
    ).json()["id"]
    return int(product), stack.token(f"{name}-{uuid.uuid4().hex[:6]}")


def test_backup_then_restore_into_an_empty_stack(stack, tmp_path):
    product, customer = product_and_customer(stack, "backup")
    placed = {}
    for quantity in (1, 2, 3):
        response = stack.post_json(
            "/api/orders", {"items": [{"product_id": product, "quantity": quantity}]},
            headers=customer,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        placed[response.json()["id"]] = response.json()["total"]
    before = stack.psql("db-primary", ORDERS)
    assert before

    dump = Path(make(stack, "backup", f"BACKUP_DIR={tmp_path}").splitlines()[-1])
    assert dump.parent == tmp_path
    assert dump.suffix == ".dump"
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert not list(tmp_path.glob("*.partial"))

    stack.compose("down", "--volumes", "--timeout", "30")
    stack.up()
    stack.wait_ready()
    assert stack.psql("db-primary", ORDERS) == ""  # a new, empty database

    make(stack, "restore", f"FILE={dump}")
    assert stack.psql("db-primary", ORDERS) == before
    # Through the API, with the token from before (it was restored too), from the replica.
    for order_id, total in placed.items():
        found = wait_until(
            lambda oid=order_id: (
                (r := stack.get(f"/api/orders/{oid}", headers=customer)).ok and r.json()
            ),
            timeout=20,
            what=f"order {order_id} after the restore",
        )
        assert found["total"] == total
    # Sequences came back too: the next order gets a new id, not one already used.
    again = stack.post_json(
        "/api/orders", {"items": [{"product_id": product, "quantity": 1}]}, headers=customer
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] > max(placed)
    assert stack.psql("db-primary", f"SELECT stock FROM shop_product WHERE id = {product}") == (
        str(100 - 6 - 1)
    )


def test_a_restore_leaves_no_cached_copy_of_the_rows_it_replaced(stack, tmp_path):
    # Restored into the running stack: the cache instance still holds the page and the stock
    # copy of a later sale, which the restored rows do not have.
    product, customer = product_and_customer(stack, "restore-cache")

    def buy(quantity: int) -> None:
        response = stack.post_json(
            "/api/orders", {"items": [{"product_id": product, "quantity": quantity}]},
            headers=customer,
        )  # fmt: skip
        assert response.status_code == 201, response.text

    def shown() -> int:
        return int(stack.get(f"/api/products/{product}").json()["stock"])

    buy(1)
    dump = Path(make(stack, "backup", f"BACKUP_DIR={tmp_path}").splitlines()[-1])
    buy(2)
    wait_until(lambda: shown() == 97, timeout=20, what="the later sale's stock copy")
    make(stack, "restore", f"FILE={dump}")
    assert stack.psql("db-primary", f"SELECT stock FROM shop_product WHERE id = {product}") == "99"
    # The restored count (once the replica has replayed the restore), not the cached copy of
    # the sale it undid, which would be shown until STOCK_CACHE_TTL (60 s) had passed.
    wait_until(lambda: shown() == 99, timeout=10, what="the restored stock shown")
    buy(1)
    wait_until(lambda: shown() == 98, timeout=20, what="a sale after the restore")


def test_restore_needs_a_file(stack):
    result = run("make", "-s", "restore", cwd=ROOT, env=stack.env(), check=False, timeout=30)
    assert result.returncode != 0
    assert "usage: make restore FILE=" in result.stderr
