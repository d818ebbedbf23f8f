"""Each row of the shop API's endpoint table, through Nginx, on the real stack."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import wait_until


@pytest.fixture(scope="module")
def staff(stack):
    return stack.token("shop-staff", staff=True)


def new_customer(stack):
    return stack.token(f"customer-{uuid.uuid4().hex[:8]}")


def make_product(stack, staff, *, stock=10, price="4.00", name=None):
    body = {"name": name or f"p-{uuid.uuid4().hex[:6]}", "price": price, "stock": stock}
    response = stack.post_json("/api/products", body, headers=staff)
    assert response.status_code == 201, response.text
    product_id = int(response.json()["id"])
    wait_until(
        lambda: stack.get(f"/api/products/{product_id}").status_code == 200,
        timeout=10,
        what="the product on the replica",
    )
    return product_id


def redis_keys(stack, pattern):
    script = f"REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -n 2 --scan --pattern '{pattern}'"
    return stack.compose("exec", "-T", "redis", "sh", "-c", script).stdout.split()


def last_page_names(stack):
    """Names on the catalogue's last page, where the newest products are (ordered by id)."""
    count = stack.get("/api/products?page_size=100").json()["count"]
    last = max(1, -(-count // 100))
    return {
        p["name"] for p in stack.get(f"/api/products?page_size=100&page={last}").json()["items"]
    }


def test_product_list_is_cached_in_redis_and_invalidated_by_a_write(stack, staff):
    product_id = make_product(stack, staff, name="Before")
    assert "Before" in last_page_names(stack)
    assert any(":products:v" in key for key in redis_keys(stack, "*products:v*"))

    patched = requests.patch(
        stack.url(f"/api/products/{product_id}"), json={"name": "After"}, headers=staff, timeout=10
    )
    assert patched.status_code == 200
    names = wait_until(lambda: last_page_names(stack), timeout=10, what="the list")
    assert "After" in names
    assert "Before" not in names


def test_product_detail_fans_out_to_both_upstream_services(stack, staff):
    product_id = make_product(stack, staff, price="4.00")
    body = stack.get(f"/api/products/{product_id}").json()
    assert body["price_source"] == "pricing-service"
    assert body["price"] == f"{10 + product_id / 100:.2f}"
    assert body["recommendations"] == [product_id + 1, product_id + 2, product_id + 3]


def test_product_detail_degrades_when_an_upstream_is_down(stack, staff):
    product_id = make_product(stack, staff, price="4.00")
    stack.compose("stop", "price")
    try:
        response = stack.get(f"/api/products/{product_id}")
        assert response.status_code == 200
        body = response.json()
        assert body["price_source"] == "catalogue"
        assert body["price"] == "4.00"
        assert body["recommendations"] == [product_id + 1, product_id + 2, product_id + 3]
    finally:
        stack.compose("start", "price")


def place(stack, headers, items, key=None):
    extra = {"Idempotency-Key": key} if key else {}
    return stack.post_json("/api/orders", {"items": items}, headers={**headers, **extra})


def test_concurrent_orders_on_overlapping_products_neither_deadlock_nor_oversell(stack, staff):
    a = make_product(stack, staff, stock=25)
    b = make_product(stack, staff, stock=25)
    customers = [new_customer(stack) for _ in range(4)]
    # Half the orders name the products in one order, half in the other: without a consistent
    # lock order this is the textbook deadlock.
    bodies = [
        [{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 1}]
        if i % 2
        else [{"product_id": b, "quantity": 1}, {"product_id": a, "quantity": 1}]
        for i in range(40)
    ]
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(
                lambda ib: place(stack, customers[ib[0] % 4], ib[1]).status_code, enumerate(bodies)
            )
        )
    assert statuses.count(201) == 25
    assert statuses.count(409) == 15
    stocks = stack.psql("db-primary", f"SELECT stock FROM shop_product WHERE id IN ({a}, {b})")
    assert stocks.split() == ["0", "0"]
    logs = stack.compose("logs", "--no-color", "db-primary").stdout
    assert "deadlock detected" not in logs


def test_a_retried_post_with_the_same_idempotency_key_is_one_order(stack, staff):
    product = make_product(stack, staff, stock=5)
    customer = new_customer(stack)
    key = str(uuid.uuid4())
    items = [{"product_id": product, "quantity": 2}]
    first = place(stack, customer, items, key)
    again = place(stack, customer, items, key)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    count = stack.psql(
        "db-primary", f"SELECT count(*) FROM shop_order WHERE idempotency_key = '{key}'"
    )
    assert count == "1"
    assert stack.psql("db-primary", f"SELECT stock FROM shop_product WHERE id = {product}") == "3"


def test_orders_are_paginated_and_private(stack, staff):
    product = make_product(stack, staff, stock=10)
    alice, bob = new_customer(stack), new_customer(stack)
    ids = [
        place(stack, alice, [{"product_id": product, "quantity": 1}]).json()["id"] for _ in range(3)
    ]
    page = stack.get("/api/orders?page_size=2", headers=alice).json()
    assert page["count"] == 3
    assert [o["id"] for o in page["items"]] == sorted(ids, reverse=True)[:2]
    assert stack.get(f"/api/orders/{ids[0]}", headers=bob).status_code == 404
    assert stack.get("/api/orders", headers=bob).json()["count"] == 0
    assert stack.get("/api/orders?page_size=1000", headers=alice).status_code == 400
    assert stack.get("/api/orders").status_code == 401


def test_read_your_writes_while_the_replica_lags(stack, staff):
    product = make_product(stack, staff, stock=10)
    customer, other = new_customer(stack), new_customer(stack)
    stack.psql("db-replica", "SELECT pg_wal_replay_pause()")
    try:
        order_id = place(stack, customer, [{"product_id": product, "quantity": 1}]).json()["id"]
        # The writer reads from the primary: their order is there at once.
        assert stack.get(f"/api/orders/{order_id}", headers=customer).status_code == 200
        assert stack.get("/api/orders", headers=customer).json()["count"] == 1
        # Everyone else still reads the paused replica, proving the replica serves reads.
        stale = stack.get(f"/api/products/{product}").json()
        assert stale["stock"] in (9, 10)  # live stock comes from Redis; the row from the replica
        assert stack.get("/api/orders", headers=other).json()["count"] == 0
    finally:
        stack.psql("db-replica", "SELECT pg_wal_replay_resume()")


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(stack, staff):
    product = make_product(stack, staff, stock=10)
    customer, reader = new_customer(stack), new_customer(stack)
    order_id = place(stack, customer, [{"product_id": product, "quantity": 1}]).json()["id"]
    stack.compose("stop", "db-replica")
    try:
        # The first read that meets the dead replica waits out PgBouncer's query_wait_timeout
        # (10s) before falling back; later ones skip the replica (shared flag in Redis).
        sent = [
            stack.get(f"/api/orders/{order_id}", headers=customer, timeout=30),
            # A customer with no recent write reads from the replica, so this one falls back.
            stack.get("/api/orders", headers=reader, timeout=30),
            stack.get(f"/api/products/{product}"),
            stack.get("/api/products"),
        ]
        assert [r.status_code for r in sent] == [200, 200, 200, 200]
        assert sent[1].json()["count"] == 0
        ready = stack.readyz()
        assert ready.status_code == 200  # degraded: reads go to the primary
        assert ready.json()["status"] == "degraded"
        assert ready.json()["failed"] == ["replica"]
    finally:
        stack.compose("start", "db-replica")
        stack.wait_ready()
