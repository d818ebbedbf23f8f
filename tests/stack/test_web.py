"""Django through Nginx: probes, a write on the primary, a read from the replica, bad input."""

import requests

from tests.support import wait_until


def test_liveness(stack):
    response = stack.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_sees_a_primary_and_a_standby(stack):
    response = stack.readyz()  # in the web container, where probes read it
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["primary"] == {"ok": True, "in_recovery": False}
    # The read path's own check: a streaming standby of this primary, within the lag bound.
    assert checks["replica"]["ok"] is True
    assert (checks["replica"]["serving"], checks["replica"]["reason"]) == (True, "ok")
    assert checks["redis"] == {"ok": True}
    assert checks["redis_cache"] == {"ok": True}


def test_readiness_is_not_public(stack):
    # Its errors name internal hosts, and every hit costs two PgBouncer logins: Nginx answers
    # it like any unknown path, without asking web.
    for path in ("/readyz", "/readyz?x=1"):
        response = stack.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == {"code": "not_found", "message": "Nothing at /readyz."}
        assert "checks" not in response.text


def create_product(stack, name: str) -> int:
    body = {"name": name, "price": "3.20", "stock": 4}
    response = stack.post_json("/api/products", body, headers=stack.token("staff", staff=True))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_write_then_read(stack):
    product_id = create_product(stack, "Teapot")
    found = wait_until(
        lambda: (r := stack.get(f"/api/products/{product_id}")).status_code == 200 and r.json(),
        timeout=10,
        what="the new product on the replica",
    )
    assert found["name"] == "Teapot"


def test_reads_are_served_by_the_replica(stack):
    """With WAL replay paused on the replica, a committed change stays invisible to reads; a
    product the replica has not seen yet is looked up on the primary, not answered 404."""
    stack.wait_ready()  # every dependency up: reads are routed to the replica again
    product_id = create_product(stack, "Before the pause")
    wait_until(
        lambda: stack.get(f"/api/products/{product_id}").status_code == 200,
        timeout=10,
        what="the product on the replica",
    )
    staff = stack.token("staff", staff=True)
    stack.psql("db-replica", "SELECT pg_wal_replay_pause()")
    try:
        renamed = requests.patch(
            stack.url(f"/api/products/{product_id}"),
            json={"name": "Renamed on the primary"},
            headers=staff,
            timeout=10,
        )
        assert renamed.status_code == 200, renamed.text
        # The replica serves the read: the old name, though the primary has the new one.
        assert stack.get(f"/api/products/{product_id}").json()["name"] == "Before the pause"
        # Created after the pause: the replica has no such row, the primary answers.
        fresh = create_product(stack, "Created during the pause")
        assert stack.get(f"/api/products/{fresh}").json()["name"] == "Created during the pause"
    finally:
        stack.psql("db-replica", "SELECT pg_wal_replay_resume()")
    wait_until(
        lambda: stack.get(f"/api/products/{product_id}").json()["name"] == "Renamed on the primary",
        timeout=10,
        what="the new name after replay resumed",
    )


def test_bad_input_is_a_json_400_and_writes_nothing(stack):
    before = stack.psql("db-primary", "SELECT count(*) FROM shop_product")
    malformed = requests.post(
        stack.url("/api/products"),
        data='{"name": ',
        headers={"Content-Type": "application/json", **stack.token("staff", staff=True)},
        timeout=10,
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    invalid = stack.post_json(
        "/api/products",
        {"name": "x", "price": "-2", "stock": 1},
        headers=stack.token("staff", staff=True),
    )
    assert invalid.status_code == 400
    assert invalid.json()["error"]["fields"].keys() == {"price"}
    assert stack.psql("db-primary", "SELECT count(*) FROM shop_product") == before
