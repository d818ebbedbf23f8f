"""Each row of the shop API's endpoint table, through Nginx, on the real stack."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from tests.stack import reliability
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
    # Pages and stock copies live in the cache instance.
    return stack.compose("exec", "-T", "redis-cache", "sh", "-c", script).stdout.split()


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
    assert body["price"] == "4.00"
    assert body["pricing_service_price"] == f"{10 + product_id / 100:.2f}"
    assert body["recommendations"] == [product_id + 1, product_id + 2, product_id + 3]


def test_product_detail_degrades_when_an_upstream_is_down(stack, staff):
    product_id = make_product(stack, staff, price="4.00")
    stack.compose("stop", "price")
    try:
        response = stack.get(f"/api/products/{product_id}")
        assert response.status_code == 200
        body = response.json()
        assert body["price"] == "4.00"
        assert body["pricing_service_price"] is None
        assert body["recommendations"] == [product_id + 1, product_id + 2, product_id + 3]
    finally:
        stack.compose("start", "price")


@contextmanager
def upstream_answers(stack, service, product_id, answer):
    """The stand-in `service` answers `answer` for this product meanwhile (upstream/server.py)."""

    def send(method, body):
        script = (
            "import sys, urllib.request as u; u.urlopen(u.Request("
            f"'http://127.0.0.1:8080/answers/{product_id}', data=sys.argv[1].encode(), "
            f"method='{method}'), timeout=5)"
        )
        result = stack.compose("exec", "-T", service, "python3", "-c", script, body, check=False)
        return result.returncode == 0

    # A test before may have just restarted the stand-in: wait until it listens.
    wait_until(lambda: send("PUT", answer), timeout=30, what=f"{service} answering {answer}")
    try:
        yield
    finally:
        send("DELETE", "")


MALFORMED = ["truncated", "not_json", "wrong_types", "wrong_key", "oversized"]


@pytest.mark.parametrize("answer", MALFORMED)
def test_a_malformed_price_answer_falls_back_to_the_catalogue_price(stack, staff, answer):
    product_id = make_product(stack, staff, price="4.00")
    with upstream_answers(stack, "price", product_id, answer):
        response = stack.get(f"/api/products/{product_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["price"] == "4.00"
    assert body["pricing_service_price"] is None
    assert body["recommendations"] == [product_id + 1, product_id + 2, product_id + 3]


@pytest.mark.parametrize("answer", MALFORMED)
def test_a_malformed_recommendations_answer_falls_back_to_none(stack, staff, answer):
    product_id = make_product(stack, staff, price="4.00")
    with upstream_answers(stack, "recommendations", product_id, answer):
        response = stack.get(f"/api/products/{product_id}")
    assert response.status_code == 200, response.text
    assert response.json()["recommendations"] == []


@contextmanager
def price_service(stack, product_id, state):
    """The pricing stand-in, for this product: up, down (stopped), failing (503) or slow."""
    if state == "up":
        yield
    elif state == "down":
        stack.compose("stop", "price")
        try:
            yield
        finally:
            stack.compose("start", "price")
    else:
        with upstream_answers(stack, "price", product_id, state):
            yield


@pytest.mark.parametrize("state", ["up", "down", "fail", "slow"])
def test_the_product_page_shows_the_price_an_order_charges(stack, staff, state):
    product_id = make_product(stack, staff, price="4.00", stock=5)
    customer = new_customer(stack)
    with price_service(stack, product_id, state):
        page = stack.get(f"/api/products/{product_id}").json()
        order = place(stack, customer, [{"product_id": product_id, "quantity": 1}])
    assert order.status_code == 201, order.text
    assert page["price"] == order.json()["items"][0]["unit_price"] == "4.00"
    # The pricing service's figure, when it answered, is there under its own name only.
    live = f"{10 + product_id / 100:.2f}" if state == "up" else None
    assert page["pricing_service_price"] == live


def place(stack, headers, items, key=None, **kwargs):
    extra = {"Idempotency-Key": key} if key else {}
    return stack.post_json("/api/orders", {"items": items}, headers={**headers, **extra}, **kwargs)


def orders_of(stack, product_id):
    """Orders naming the product, counted on the primary: what was really committed."""
    sql = f"SELECT count(DISTINCT order_id) FROM shop_orderitem WHERE product_id = {product_id}"
    return int(stack.psql("db-primary", sql))


def primary_stock(stack, product_id):
    return int(stack.psql("db-primary", f"SELECT stock FROM shop_product WHERE id = {product_id}"))


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
        # A read that meets the dead replica falls back to the primary (one already on it is
        # cut within the check window, core/db.py); later ones skip the replica (its check,
        # and the shared flag in Redis).
        sent = [
            stack.get(f"/api/orders/{order_id}", headers=customer, timeout=30),
            # A customer with no recent write reads from the replica, so this one falls back.
            stack.get("/api/orders", headers=reader, timeout=30),
            stack.get(f"/api/products/{product}"),
            stack.get("/api/products"),
        ]
        assert [r.status_code for r in sent] == [200, 200, 200, 200]
        assert sent[1].json()["count"] == 0

        # Each worker's readiness is its own checks' view: the one answering may not have met
        # the stopped replica yet, but does within the check window.
        def degraded() -> bool:
            ready = stack.readyz()
            assert ready.status_code == 200  # degraded: reads go to the primary
            return ready.json()["status"] == "degraded" and ready.json()["failed"] == ["replica"]

        wait_until(degraded, timeout=10, what="readiness saying the replica failed")
    finally:
        stack.compose("start", "db-replica")
        stack.wait_ready()


def _new_product(stack, staff):
    name = f"o-{uuid.uuid4().hex[:6]}"
    return make_product(stack, staff, stock=10, price="4.00", name=name), name


def _orders_and_retries(stack, product, *, with_key):
    """Two orders, each POSTed twice (a client retrying with its key, or not knowing the first
    went through): every reply is judged against the rows the primary holds afterwards."""
    customer = new_customer(stack)
    items = [{"product_id": product, "quantity": 1}]
    keys = [str(uuid.uuid4()) if with_key else None for _ in range(2)]
    return [place(stack, customer, items, key, timeout=30) for key in keys for _ in range(2)]


def _assert_exactly_once(stack, product, name, replies, *, with_key):
    statuses = [r.status_code for r in replies]
    # A committed order answered 5xx is retried by the client: a duplicate, or a lost answer.
    assert all(s < 500 for s in statuses), [(r.status_code, r.text) for r in replies]
    assert statuses == ([201, 200, 201, 200] if with_key else [201, 201, 201, 201])
    line = {"product_id": product, "product_name": name, "quantity": 1, "unit_price": "4.00"}
    assert all(r.json()["items"] == [line] for r in replies), [r.json() for r in replies]
    answered = {r.json()["id"] for r in replies}
    assert orders_of(stack, product) == len(answered)
    assert primary_stock(stack, product) == 10 - len(answered)


def _record(stack, scenario, cases):
    """docs/RELIABILITY.md's row: orders sent, committed, answered 2xx, and committed behind an
    error (a client that retries those buys twice)."""
    replies = [reply for _, sent in cases for reply in sent]
    committed = sum(orders_of(stack, product) for product, _ in cases)
    answered = {r.json()["id"] for r in replies if 200 <= r.status_code < 300}
    reliability.record(
        scenario,
        load="4 orders, each POSTed twice, 2 with and 2 without an Idempotency-Key",
        sent=len(replies),
        errors=sum(not 200 <= r.status_code < 300 for r in replies),
        lost=0,
        notes=f"{committed} orders committed, {len(answered)} answered 2xx, "
        f"{committed - len(answered)} committed behind an error (duplicates on retry)",
    )


@contextmanager
def _replica_stopped(stack):
    stack.compose("stop", "db-replica")
    try:
        yield
    finally:
        stack.compose("start", "db-replica")
        stack.wait_ready()


@contextmanager
def _replica_paused(stack):
    stack.psql("db-replica", "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        stack.psql("db-replica", "SELECT pg_wal_replay_resume()")


@pytest.mark.parametrize(
    ("fault", "scenario"),
    [
        (_replica_stopped, "Replica stopped during order writes"),
        (_replica_paused, "Replica lagging (WAL replay paused) during order writes"),
    ],
    ids=["replica-stopped", "replica-lagging"],
)
def test_orders_placed_while_the_replica_fails_are_answered_once_in_full(
    stack, staff, fault, scenario
):
    """The reply is read from the primary (the order and its related rows came from there):
    never a 5xx for a committed order, never an empty item list from a lagging replica."""
    plain, keyed = _new_product(stack, staff), _new_product(stack, staff)
    with fault(stack):
        plain_replies = _orders_and_retries(stack, plain[0], with_key=False)
        keyed_replies = _orders_and_retries(stack, keyed[0], with_key=True)
    _record(stack, scenario, [(plain[0], plain_replies), (keyed[0], keyed_replies)])
    _assert_exactly_once(stack, *plain, plain_replies, with_key=False)
    _assert_exactly_once(stack, *keyed, keyed_replies, with_key=True)


def test_an_order_at_the_price_a_lagging_page_showed_is_refused_not_charged_otherwise(stack, staff):
    """The page reads the replica; orders charge the primary's price. A client that sends the
    price it showed gets a 409 naming the current one when they differ, and nothing is placed."""
    product = make_product(stack, staff, price="2.11", stock=5)
    customer = new_customer(stack)
    wait_until(
        lambda: stack.get(f"/api/products/{product}").status_code == 200,
        timeout=30,
        what="the product on the replica",
    )
    with _replica_paused(stack):
        patched = requests.patch(
            stack.url(f"/api/products/{product}"), json={"price": "7.77"}, headers=staff, timeout=10
        )
        assert patched.status_code == 200
        shown = stack.get(f"/api/products/{product}").json()["price"]
        assert shown == "2.11"  # the replica has not replayed the change
        line = {"product_id": product, "quantity": 1, "expected_unit_price": shown}
        refused = place(stack, customer, [line])
        line["expected_unit_price"] = "7.77"
        placed = place(stack, customer, [line])
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "price_changed"
    assert "7.77" in refused.json()["error"]["message"]
    assert placed.status_code == 201, placed.text
    assert placed.json()["items"][0]["unit_price"] == "7.77"
    assert orders_of(stack, product) == 1


def test_name_only_patches_never_undo_concurrent_sales(stack, staff):
    product = make_product(stack, staff, stock=100)
    customers = [new_customer(stack) for _ in range(4)]

    def act(i):
        if i % 2:
            items = [{"product_id": product, "quantity": 1}]
            return place(stack, customers[i % 4], items, timeout=30).status_code
        body = {"name": f"renamed-{i}"}
        url = stack.url(f"/api/products/{product}")
        return requests.patch(url, json=body, headers=staff, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(act, range(60)))
    assert set(statuses[0::2]) == {200}
    assert set(statuses[1::2]) == {201}
    sold = orders_of(stack, product)
    assert sold == 30
    assert primary_stock(stack, product) == 100 - sold


def test_a_list_page_filled_while_the_replica_lags_holds_the_new_data(stack, staff):
    before, after = f"lag-before-{uuid.uuid4().hex[:6]}", f"lag-after-{uuid.uuid4().hex[:6]}"
    product_id = make_product(stack, staff, name=before)
    assert before in last_page_names(stack)  # the page is cached under the current version
    stack.psql("db-replica", "SELECT pg_wal_replay_pause()")
    try:
        patched = requests.patch(
            stack.url(f"/api/products/{product_id}"),
            json={"name": after},
            headers=staff,
            timeout=10,
        )
        assert patched.status_code == 200
        names = last_page_names(stack)
        assert after in names
        assert before not in names
    finally:
        stack.psql("db-replica", "SELECT pg_wal_replay_resume()")
    # The page cached during the lag is the one served now: it must still be the new one.
    names = last_page_names(stack)
    assert after in names
    assert before not in names
