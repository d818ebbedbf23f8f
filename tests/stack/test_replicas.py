"""A second replica (compose profile "replicas", DB_REPLICA_NAMES): reads spread over both,
skip a stopped one without an error, and use it again once it is back. The rest of the suite
runs on one replica, so the module puts the stack back as it was."""

import uuid
from collections.abc import Callable, Iterator
from subprocess import CompletedProcess

import pytest

from tests.support import ROOT, run, wait_until

TWO_REPLICAS = {"DB_REPLICA_NAMES": "app_replica,app_replica_2"}
# Every scan of the orders table: /api/orders reads it on whichever database serves the read.
ORDER_SCANS = (
    "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) "
    "FROM pg_stat_user_tables WHERE relname = 'shop_order'"
)
BURST = 40

Compose = Callable[..., CompletedProcess[str]]


@pytest.fixture(scope="module")
def compose2(stack) -> Iterator[Compose]:
    env = {**stack.env(), **TWO_REPLICAS}

    def compose(*args: str, check: bool = True, timeout: float = 300) -> CompletedProcess[str]:
        return run(
            "docker", "compose", "--profile", "replicas", *args,
            check=check, timeout=timeout, cwd=ROOT, env=env,
        )  # fmt: skip

    try:
        # The clone, then PgBouncer and web recreated with the second database and alias.
        compose("up", "--detach", "--wait", "--wait-timeout", "120", "--no-deps", "db-replica-2")
        compose(
            "up", "--detach", "--wait", "--wait-timeout", "120", "--no-deps", "pgbouncer", "web"
        )
        stack.wait_ready()
        yield compose
    finally:
        compose("rm", "--stop", "--force", "db-replica-2", check=False)
        stack.compose("up", "--detach", "--wait", "--wait-timeout", "120", "--no-deps",
                      "pgbouncer", "web", check=False)  # fmt: skip
        run("docker", "volume", "rm", f"{stack.project}_db-replica-2-data", check=False)
        # Its slot would keep WAL on the primary for a replica that never comes back.
        wait_until(lambda: slot_dropped(stack), timeout=30, what="slot replica2 dropped")
        stack.wait_ready()


def slot_dropped(stack) -> bool:
    stack.psql(
        "db-primary",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = 'replica2' AND NOT active",
    )
    left = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replica2'"
    return stack.psql("db-primary", left) == "0"


def scans(compose: Compose, service: str) -> int:
    out = compose("exec", "-T", service, "psql", "-U", "postgres", "-d", "app", "-XAtq", "-c",
                  ORDER_SCANS).stdout  # fmt: skip
    return int(out.strip())


def reads(stack, reader: dict[str, str], count: int) -> list[int]:
    # A customer with no recent write: their orders come from a replica.
    return [stack.get("/api/orders", headers=reader, timeout=30).status_code for _ in range(count)]


def grown(stack, compose: Compose, before: dict[str, int], by: int) -> bool:
    """Each server's order scans grew by `by` since `before`. A backend reports its statistics
    at the end of a transaction a second after its last report (else only once idle, seconds
    later): a few reads of another table on the replicas make the counts show sooner."""
    nudges = [stack.get("/api/products/1", timeout=30).status_code for _ in range(6)]
    assert all(status < 500 for status in nudges), nudges
    return all(scans(compose, service) - start >= by for service, start in before.items())


def test_reads_spread_over_both_replicas_skip_a_stopped_one_and_come_back(stack, compose2):
    reader = stack.token(f"replicas-{uuid.uuid4().hex[:8]}")
    assert stack.readyz().json()["checks"]["replica_2"]["in_recovery"] is True
    slots = stack.psql("db-primary", "SELECT string_agg(slot_name, ',' ORDER BY slot_name) "
                       "FROM pg_replication_slots WHERE active")  # fmt: skip
    assert slots == "replica1,replica2"

    # Spread: a burst of reads scans the orders table on both replicas, each a fair share.
    before = {s: scans(compose2, s) for s in ("db-replica", "db-replica-2")}
    assert reads(stack, reader, BURST) == [200] * BURST
    wait_until(lambda: grown(stack, compose2, before, BURST // 4), timeout=20,
               interval=1, what="each replica served a share of the reads")  # fmt: skip

    # One stopped: every read still answers, from the other (the first that meets the dead one
    # falls back to the primary; the shared mark then keeps the others off it).
    compose2("stop", "db-replica-2")
    try:
        first = {"db-replica": scans(compose2, "db-replica")}
        assert reads(stack, reader, BURST) == [200] * BURST
        wait_until(lambda: grown(stack, compose2, first, BURST - 5), timeout=20,
                   interval=1, what="db-replica served the reads")  # fmt: skip
        ready = stack.readyz().json()
        assert ready["status"] == "degraded"
        assert ready["failed"] == ["replica_2"]
    finally:
        compose2("start", "db-replica-2")

    # Back: once its mark expires (REPLICA_RETRY_AFTER_SECONDS) or a probe finds it up, reads
    # reach it again.
    restarted = {"db-replica-2": wait_until(lambda: scans(compose2, "db-replica-2") + 1,
                                            timeout=30, what="db-replica-2 up") - 1}  # fmt: skip

    def back() -> bool:
        assert reads(stack, reader, 10) == [200] * 10
        return grown(stack, compose2, restarted, 1)

    wait_until(back, timeout=40, interval=1, what="reads reach db-replica-2 again")
