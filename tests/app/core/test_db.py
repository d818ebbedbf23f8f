"""The replica-down mark: shared through the real test Redis, kept per process for a second."""

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import caches
from django.db import OperationalError

from config.db_router import PRIMARY, REPLICA
from core import db


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stops core.db's clock (a loaded machine cannot stretch a burst past the local TTL);
    calling the fixture moves it on."""
    now = [1000.0]
    monkeypatch.setattr(db, "monotonic", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def _gets(redis_client: Any) -> int:
    calls: int = redis_client.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    return calls


def test_a_burst_of_reads_asks_redis_once_per_local_ttl(redis_settings, redis_client, clock):
    before = _gets(redis_client)
    assert [db.read_alias() for _ in range(50)] == [REPLICA] * 50
    assert _gets(redis_client) - before == 1
    clock(db.REPLICA_DOWN_LOCAL_TTL_SECONDS)
    assert db.read_alias() == REPLICA
    assert _gets(redis_client) - before == 2


def test_marking_the_replica_down_and_up_counts_at_once_in_this_process(
    redis_settings, redis_client, clock
):
    assert db.read_alias() == REPLICA  # the local copy now says "up"
    before = _gets(redis_client)
    db.replica_mark_down()
    assert db.read_alias() == PRIMARY
    assert caches["default"].get(db.REPLICA_DOWN_KEY)  # shared with the other processes
    db.replica_mark_up()
    assert db.read_alias() == REPLICA
    assert caches["default"].get(db.REPLICA_DOWN_KEY) is None
    # Only the two checks above asked Redis; the reads used the local copy the marks updated.
    assert _gets(redis_client) - before == 2


def test_another_processs_mark_reaches_this_one_within_the_local_ttl(redis_settings, clock):
    assert db.read_alias() == REPLICA
    caches["default"].set(db.REPLICA_DOWN_KEY, 1)  # as another worker's failed read does
    assert db.read_alias() == REPLICA  # the stale second this process trades for fewer GETs
    clock(db.REPLICA_DOWN_LOCAL_TTL_SECONDS)
    assert db.read_alias() == PRIMARY


def test_a_miss_on_the_replica_is_decided_by_the_primary_when_asked(redis_settings, clock):
    seen: list[str] = []

    def query(alias: str) -> None:
        seen.append(alias)

    assert db.read(query, primary_decides_missing=True) is None
    assert seen == [REPLICA, PRIMARY]
    seen.clear()
    assert db.read(query) is None  # a plain read takes the replica's word
    assert seen == [REPLICA]


def test_the_async_read_falls_back_like_the_sync_one(redis_settings, clock):
    seen: list[str] = []

    async def missing(alias: str) -> None:
        seen.append(alias)

    async def failing(alias: str) -> str:
        seen.append(alias)
        if alias == REPLICA:
            raise OperationalError("replica gone")
        return "from the primary"

    assert asyncio.run(db.aread(missing, primary_decides_missing=True)) is None
    assert seen == [REPLICA, PRIMARY]
    seen.clear()
    assert asyncio.run(db.aread(failing)) == "from the primary"
    assert seen == [REPLICA, PRIMARY]
    assert db.read_alias() == PRIMARY  # marked down for every process
    db.replica_mark_up()


def test_the_async_read_asks_redis_only_off_the_event_loop(redis_settings, clock, monkeypatch):
    asked_on: list[threading.Thread] = []
    read_alias = db.read_alias

    def spy(**kwargs: Any) -> str:
        asked_on.append(threading.current_thread())
        return read_alias(**kwargs)

    monkeypatch.setattr(db, "read_alias", spy)

    async def query(alias: str) -> str:
        return alias

    async def two_reads() -> threading.Thread:
        db.replica_down_forget()
        assert await db.aread(query) == REPLICA  # no fresh copy: Redis, on a thread
        assert await db.aread(query) == REPLICA  # the fresh copy, inline
        return threading.current_thread()

    loop_thread = asyncio.run(two_reads())
    assert len(asked_on) == 1
    assert asked_on[0] is not loop_thread
