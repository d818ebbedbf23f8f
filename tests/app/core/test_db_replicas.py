"""Several replicas: reads spread over those not marked down, each with its own shared mark.

The unit suite has one replica alias; these tests name a second one in DATABASE_REPLICAS (what
DB_REPLICA_NAMES does) and pass read() queries that never open a connection on it.
"""

import asyncio
from collections import Counter

import pytest
from django.core.cache import caches
from django.db import OperationalError

from core import db
from core.db_router import PRIMARY, REPLICA, PrimaryReplicaRouter
from shop.models import Order, OrderItem

REPLICA_2 = "replica_2"
READS = 200


@pytest.fixture
def two_replicas(settings, redis_settings, clock):  # type: ignore[no-untyped-def]
    settings.DATABASE_REPLICAS = (REPLICA, REPLICA_2)
    db.replica_down_forget()
    return settings


def test_reads_spread_over_every_replica(two_replicas):
    seen = Counter(db.read_alias() for _ in range(READS))
    assert set(seen) == {REPLICA, REPLICA_2}
    # Random, yet not lopsided: each well over a quarter of the reads.
    assert min(seen.values()) > READS / 4


def test_the_routers_default_read_spreads_too(two_replicas):
    router = PrimaryReplicaRouter()
    assert {router.db_for_read(OrderItem) for _ in range(READS)} == {REPLICA, REPLICA_2}
    order = Order()
    order._state.db = REPLICA_2  # order.items stays where the order came from
    assert {router.db_for_read(OrderItem, instance=order) for _ in range(20)} == {REPLICA_2}


def test_a_replica_marked_down_is_skipped_and_the_other_still_used(two_replicas):
    db.replica_mark_down(alias=REPLICA_2)
    assert {db.read_alias() for _ in range(50)} == {REPLICA}
    # Its own key: the first replica's mark is untouched.
    assert caches["default"].get(db.replica_down_key(REPLICA_2))
    assert caches["default"].get(db.REPLICA_DOWN_KEY) is None
    # Another process sees it through Redis.
    db.replica_down_forget()
    assert {db.read_alias() for _ in range(50)} == {REPLICA}
    db.replica_mark_up(alias=REPLICA_2)
    assert {db.read_alias() for _ in range(READS)} == {REPLICA, REPLICA_2}


def test_another_processs_mark_on_one_replica_reaches_this_one_within_the_local_ttl(
    two_replicas, clock
):
    db.read_alias()
    caches["default"].set(db.replica_down_key(REPLICA), 1)  # as another worker's failed read
    clock(db.REPLICA_DOWN_LOCAL_TTL_SECONDS)
    assert {db.read_alias() for _ in range(50)} == {REPLICA_2}


def test_reads_go_to_the_primary_only_when_every_replica_is_down(two_replicas):
    db.replica_mark_down(alias=REPLICA)
    assert REPLICA_2 in {db.read_alias() for _ in range(20)}
    db.replica_mark_down(alias=REPLICA_2)
    assert {db.read_alias() for _ in range(20)} == {PRIMARY}
    db.replica_down_forget()
    assert db.read_alias() == PRIMARY  # from Redis too
    db.replica_mark_up(alias=REPLICA)
    assert {db.read_alias() for _ in range(20)} == {REPLICA}


def test_read_your_writes_still_reads_the_primary(two_replicas):
    db.recent_write_mark(user_id=7)
    assert {db.read_alias(user_id=7) for _ in range(50)} == {PRIMARY}
    assert {db.read_alias(user_id=8) for _ in range(READS)} == {REPLICA, REPLICA_2}


@pytest.mark.parametrize("how", ["read", "aread"])
def test_a_replica_that_cannot_be_reached_falls_back_and_only_it_is_skipped(two_replicas, how):
    seen: list[str] = []

    def query(alias: str) -> str:
        seen.append(alias)
        if alias == REPLICA:
            raise OperationalError("replica gone")
        return alias

    async def aquery(alias: str) -> str:
        return query(alias)

    def run() -> str:
        return db.read(query) if how == "read" else asyncio.run(db.aread(aquery))

    # Reads land on either replica until one lands on the dead one and is retried on the primary.
    results = [run() for _ in range(READS)]
    assert PRIMARY in results
    failed_at = seen.index(REPLICA)
    assert seen[failed_at + 1] == PRIMARY
    assert set(seen[failed_at + 2 :]) == {REPLICA_2}  # marked down: the other takes every read
    assert caches["default"].get(db.REPLICA_DOWN_KEY)
    assert caches["default"].get(db.replica_down_key(REPLICA_2)) is None
    db.replica_mark_up()
