"""`docker compose down` then `up` (volumes kept): the data is intact, nothing re-initialised."""

from tests.support import wait_until


def test_data_survives_down_and_up(stack):
    response = stack.post_json(
        "/api/products",
        {"name": "Survivor", "price": "1.00", "stock": 1},
        headers=stack.token("staff", staff=True),
    )
    product_id = response.json()["id"]
    wait_until(
        lambda: stack.get(f"/api/products/{product_id}").status_code == 200,
        timeout=10,
        what="the product on the replica",
    )

    stack.compose("down", "--timeout", "30")
    stack.up()
    stack.wait_ready()

    assert stack.get(f"/api/products/{product_id}").json()["name"] == "Survivor"
    for service in ("db-primary", "db-replica"):
        logs = stack.compose("logs", "--no-color", service).stdout
        assert "reusing the existing" in logs
        assert "initialising" not in logs
        assert "cloning" not in logs
    assert stack.psql("db-primary", "SELECT state FROM pg_stat_replication") == "streaming"
