"""Two read replicas on the real stack (README "Operations", "Two read replicas"): reads land on
both; one stopped, one paused past the lag bound, or one from another cluster is skipped with no
failed request, no order that vanishes, and /readyz naming it. The session stack keeps one
replica: this module alone starts db-replica2, and puts the stack back as it found it."""

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.stack.conftest import Stack
from tests.support import ROOT, run, wait_until

TWO = {"DB_REPLICA_NAMES": "app_replica,app_replica2"}
# Scans of the orders table on a replica: only customers' reads touch it there (the checks read
# no table), so a rise says that replica served order reads.
SCANS = (
    "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)"
    " FROM pg_stat_user_tables WHERE relname = 'shop_order'"
)


def compose(stack: Stack, *args: str, two: bool = True, check: bool = True) -> str:
    env = {**stack.env(), **(TWO if two else {})}
    result = run("docker", "compose", *args, check=False, timeout=600, cwd=ROOT, env=env)
    assert not check or result.returncode == 0, f"compose {args}: {result.stderr}"
    return result.stdout


def up(stack: Stack, *, two: bool) -> None:
    """pgbouncer and web (re)created for one or two replicas; db-replica2 started with two."""
    more = ["--scale", "db-replica2=1", "db-replica2"] if two else []
    compose(stack, "up", "--detach", "--wait", "--wait-timeout", "240",
            "pgbouncer", "web", *more, two=two)  # fmt: skip


def container(stack: Stack) -> str:
    return f"{stack.project}-db-replica2-1"


def until_past_read_your_writes() -> Iterator[None]:
    """Yields until read-your-writes (5 s) and the lag bound (2 s) are past, with a margin: the
    reads made then are the ones a lagging replica could serve. A bound on the loop, not on
    anything the stack does."""
    end = time.monotonic() + 5 + 2 + 3
    while time.monotonic() < end:
        yield


# docker-compose.yml's REPLICA_CHECK_SECONDS: a check older than two of them is stale (the
# replica leaves the reads), and a query older than that on a stale replica is cut, so a read
# in flight on a frozen replica ends about two windows after the freeze. The client's bound:
# those, and a margin for a loaded machine; without the cut such a read waits until the replica
# thaws (or Nginx's 504 at 30 s).
CHECK_SECONDS = 0.5
IN_FLIGHT_BOUND = 2 * 2 * CHECK_SECONDS + 3


def serving_gauge(stack: Stack, alias: str) -> float | None:
    return stack.metric("django_db_replica_serving", alias=alias)


def ready_checks(stack: Stack) -> dict[str, dict[str, object]]:
    checks: dict[str, dict[str, object]] = stack.readyz().json()["checks"]
    return checks


@pytest.fixture(scope="module")
def two(stack: Stack) -> Iterator[Stack]:
    up(stack, two=True)
    try:
        wait_until(
            lambda: stack.readyz().json().get("status") == "ok",
            timeout=120,
            what="/readyz ok with both replicas serving",
        )
        yield stack
    finally:
        compose(stack, "rm", "--stop", "--force", "db-replica2", check=False)
        # Its slot would hold WAL for a replica that is gone (README "Operations").
        wait_until(
            lambda: (
                stack.psql(
                    "db-primary",
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = 'replica2' AND NOT active",
                )
                == ""
                and "replica2"
                not in stack.psql("db-primary", "SELECT slot_name FROM pg_replication_slots")
            ),
            timeout=30,
            what="replica2's slot dropped",
        )
        up(stack, two=False)
        stack.wait_ready()


@pytest.fixture(scope="module")
def customers(two: Stack) -> list[dict[str, str]]:
    """Two customers made one after the other: consecutive ids, so one sticks to each replica
    (core.db picks by id among the serving replicas)."""
    return [two.token(f"replicas-{uuid.uuid4().hex[:8]}") for _ in range(2)]


@pytest.fixture(scope="module")
def product(two: Stack) -> int:
    staff = two.token("replicas-staff", staff=True)
    body = {"name": f"r-{uuid.uuid4().hex[:6]}", "price": "2.00", "stock": 1000}
    response = two.post_json("/api/products", body, headers=staff)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def scans(stack: Stack, service: str) -> int:
    return int(stack.psql(service, SCANS))


def orders(stack: Stack, customer: dict[str, str]) -> int:
    response = stack.get("/api/orders", headers=customer, timeout=30)
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


def place(stack: Stack, customer: dict[str, str], product: int) -> None:
    body = {"items": [{"product_id": product, "quantity": 1}]}
    response = stack.post_json("/api/orders", body, headers=customer, timeout=30)
    assert response.status_code == 201, response.text


def test_each_replica_has_its_own_slot_and_streams(two):
    slots = two.psql("db-primary", "SELECT slot_name, active FROM pg_replication_slots ORDER BY 1")
    assert slots.splitlines() == ["replica1|t", "replica2|t"]
    assert two.psql("db-replica2", "SELECT pg_is_in_recovery()") == "t"


def test_reads_land_on_both_replicas(two, customers):
    before = {service: scans(two, service) for service in ("db-replica", "db-replica2")}
    for _ in range(3):
        for customer in customers:
            assert orders(two, customer) == 0
    # Statistics reach pg_stat_user_tables when a backend next reports them (within seconds).
    wait_until(
        lambda: all(scans(two, service) > before[service] for service in before),
        timeout=30,
        what="order reads on both replicas",
    )


def test_a_paused_replica_leaves_the_reads_and_no_order_vanishes(two, customers, product):
    two.psql("db-replica2", "SELECT pg_wal_replay_pause()")
    try:
        for customer in customers:
            place(two, customer, product)
        # Past read-your-writes, both read from a replica again: never the paused one, which
        # lacks their order.
        for _ in until_past_read_your_writes():
            assert [orders(two, customer) for customer in customers] == [1, 1]
        replica2 = ready_checks(two)["replica2"]
        assert (replica2["ok"], replica2["reason"]) == (False, "lagging"), replica2
    finally:
        two.psql("db-replica2", "SELECT pg_wal_replay_resume()")
    wait_until(lambda: ready_checks(two)["replica2"]["ok"], timeout=60, what="replica2 caught up")


def test_a_stopped_replica_fails_no_request_and_reads_go_to_the_other(two, customers):
    run("docker", "stop", container(two))
    try:
        before = scans(two, "db-replica")
        replies = [two.get("/api/orders", headers=c, timeout=30) for c in customers * 3]
        replies += [two.get("/api/products", timeout=30) for _ in range(3)]
        assert [r.status_code for r in replies] == [200] * len(replies)
        probe = two.readyz()
        assert (probe.status_code, probe.json()["failed"]) == (200, ["replica2"])
        wait_until(
            lambda: scans(two, "db-replica") > before, timeout=30, what="reads on db-replica"
        )
    finally:
        run("docker", "start", container(two))
    wait_until(lambda: two.readyz().json().get("status") == "ok", timeout=120, what="replica2 back")


def test_a_replica_of_another_cluster_never_serves(two, customers, product):
    """db-replica2's name taken by a Postgres from its own initdb (the stale volume of a
    previous stack, in the outage this guards against): it answers PgBouncer's logins as the
    app's role, yet holds none of this primary's data."""
    project = two.project
    foreign = f"{project}-foreign-replica"
    run("docker", "stop", container(two))
    run("docker", "rm", "--force", "--volumes", foreign, check=False)
    image = compose(two, "config", "--images").split()
    postgres = next(i for i in image if "/postgres:" in i)
    run("docker", "run", "--detach", "--name", foreign, "--network", f"{project}_backend",
        "--network-alias", "db-replica2", "-e", "PG_ROLE=primary", "-e", "DB_PASSWORD=dev-only-app",
        "-e", "REPLICATION_PASSWORD=dev-only-replication",
        "-e", "MONITORING_DB_PASSWORD=dev-only-monitoring", postgres)  # fmt: skip
    try:
        wait_until(
            lambda: ready_checks(two)["replica2"].get("reason") == "other_primary",
            timeout=120,
            what="replica2 found to be another cluster's",
        )
        for customer in customers:
            place(two, customer, product)
        expected = [orders(two, customer) for customer in customers]
        # Past read-your-writes, both read from a replica: only ever db-replica.
        for _ in until_past_read_your_writes():
            assert [orders(two, customer) for customer in customers] == expected
        probe = two.readyz()
        assert probe.status_code == 200
        assert probe.json()["status"] == "degraded"
        assert probe.json()["checks"]["replica2"]["reason"] == "other_primary"
    finally:
        run("docker", "rm", "--force", "--volumes", foreign, check=False)
        run("docker", "start", container(two))
    wait_until(lambda: two.readyz().json().get("status") == "ok", timeout=120, what="replica2 back")


def test_reads_in_flight_on_a_frozen_replica_are_answered_by_the_primary(two, customers, product):
    """docker pause: the replica's server stops answering mid-query. The reads already on it
    are cut within the check window and answered from the primary: every one 200, correct,
    none held past the bound; /metrics and /readyz say it serves no reads meanwhile."""
    expected = [orders(two, customer) for customer in customers]
    stop = threading.Event()

    def reads(index: int) -> list[str]:
        """One customer's orders (sync path) or the product page (async path), again and
        again; a problem per answer that was not a correct 200 within the bound."""
        problems = []
        while not stop.is_set():
            customer = index % len(customers)
            try:
                if index < len(customers):
                    reply = two.get("/api/orders", headers=customers[customer],
                                    timeout=IN_FLIGHT_BOUND)  # fmt: skip
                    good = reply.status_code == 200 and reply.json()["count"] == expected[customer]
                else:
                    reply = two.get(f"/api/products/{product}", timeout=IN_FLIGHT_BOUND)
                    good = reply.status_code == 200 and reply.json()["id"] == product
            except requests.RequestException as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            if not good:
                problems.append(f"{reply.status_code}: {reply.text[:200]}")
        return problems

    since = run("date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    paused: dict[str, object] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(reads, index) for index in range(4)]
        try:
            time.sleep(1)  # reads under way on both replicas
            run("docker", "pause", container(two))
            try:
                # What ReplicaNotServing and an operator see, within the same bound.
                wait_until(lambda: serving_gauge(two, "replica2") == 0, timeout=IN_FLIGHT_BOUND,
                           what="django_db_replica_serving 0 for the frozen replica")  # fmt: skip
                paused["gauge"] = 0
            except AssertionError as exc:
                paused["gauge"] = str(exc)
            paused["readyz"] = ready_checks(two)["replica2"]
            # Reads go on, frozen replica and all, for as long again.
            time.sleep(IN_FLIGHT_BOUND)
        finally:
            stop.set()
            problems = [problem for future in futures for problem in future.result()]
            run("docker", "unpause", container(two), check=False)
    assert problems == []
    assert paused["gauge"] == 0
    readyz = paused["readyz"]
    assert isinstance(readyz, dict)
    assert (readyz["ok"], readyz.get("reason")) in {(False, "stalled"), (False, "unreachable")}
    # The mechanism ran: reads already on the frozen replica were cut and answered again.
    logs = two.compose("logs", "--no-color", "--since", since, "web").stdout
    assert "falling back to the primary" in logs
    wait_until(lambda: two.readyz().json().get("status") == "ok", timeout=60, what="replica2 back")
    assert serving_gauge(two, "replica2") == 1
    # PgBouncer dropped the server links of the cut reads: none answers a later read with the
    # rows of the query it was cut in.
    for _ in range(3):
        assert [orders(two, customer) for customer in customers] == expected
