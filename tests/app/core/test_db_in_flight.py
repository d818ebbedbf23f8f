"""A read already on a replica when that replica stops answering (frozen: its check stalls;
killed: its check fails) is cut by the watchdog and answered from the primary; a replica that
answers its checks, lagging or not, never has a query cut. Real Postgres: the replica alias
mirrors the primary, and pg_sleep stands for the server that never answers. The stack suite
(tests/stack/test_replicas.py) freezes a real standby."""

import json
import math
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import OperationalError as DjangoOperationalError
from django.db import connections, transaction
from prometheus_client import REGISTRY

from core import db, metrics
from core.db import replica_checkers_start as checkers_start  # the real one (conftest stubs it)
from core.db_router import PRIMARY, REPLICA
from core.selectors import readiness_get
from tests.support import wait_until

# Far past anything the test waits for: a query still running at its end was never cut.
NEVER_ANSWERS = "SELECT pg_sleep(20)"


@pytest.fixture
def watchdog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's real watchdog thread (the unit suite starts no checks of its own)."""
    stopping = threading.Event()
    monkeypatch.setattr(db, "_checkers_stopping", stopping)
    thread = threading.Thread(target=db._watchdog_run, daemon=True)
    thread.start()
    yield
    stopping.set()
    thread.join(5)
    # The server never learns its client left until its sleep ends: end it now.
    with db.database_connect(PRIMARY, 5) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
            [NEVER_ANSWERS],
        )


def found(alias: str, reason: str = "ok", *, age: float = 0.0) -> None:
    """What the replica's check found `age` seconds ago; no check follows, as when it hangs."""
    lag = None if reason == "unreachable" else 9.0 if reason == "lagging" else 0.0
    health = db.ReplicaHealth(reason == "ok", reason, lag, db.monotonic() - age)
    db._health = {**db._health, alias: health}


def on_replica_hangs(alias: str) -> str:
    if alias != PRIMARY:
        with connections[alias].cursor() as cursor:
            cursor.execute(NEVER_ANSWERS)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    return alias


@pytest.mark.django_db(transaction=True, databases=[PRIMARY, REPLICA])
def test_a_read_on_a_replica_whose_check_stalls_is_answered_by_the_primary(
    redis_settings, watchdog
):
    found(REPLICA)  # serving, then its check stalls (a frozen server)
    assert db.read(on_replica_hangs) == PRIMARY
    # Out of this process's reads at once, and of every other's through Redis.
    assert db.read_alias() == PRIMARY
    assert db.caches["state"].get(db.replica_down_key(REPLICA))
    db.replica_mark_up(alias=REPLICA)


@pytest.mark.django_db(transaction=True, databases=[PRIMARY, REPLICA])
def test_an_async_read_on_a_replica_that_became_unreachable_is_answered_by_the_primary(
    redis_settings, watchdog
):
    async def query(alias: str) -> str:
        return await sync_to_async(on_replica_hangs)(alias)

    found(REPLICA)

    def unreachable_soon() -> None:
        # The check's next round finds the replica gone (killed, its host unreachable).
        threading.Event().wait(0.2)
        found(REPLICA, "unreachable")

    threading.Thread(target=unreachable_soon, daemon=True).start()
    assert async_to_sync(db.aread)(query) == PRIMARY
    db.replica_mark_up(alias=REPLICA)


@pytest.mark.django_db(transaction=True, databases=[PRIMARY, REPLICA])
def test_a_query_on_a_lagging_replica_that_answers_its_checks_is_never_cut(
    redis_settings, watchdog, settings
):
    stop = threading.Event()

    def checks(reason: str) -> None:
        while not stop.wait(settings.REPLICA_CHECK_SECONDS):
            found(REPLICA, reason)

    found(REPLICA, "lagging")
    checker = threading.Thread(target=checks, args=("lagging",), daemon=True)
    checker.start()
    try:
        with connections[REPLICA].cursor() as cursor:
            # Several check windows long: the watchdog looks at it many times.
            cursor.execute("SELECT pg_sleep(%s), 1", [4 * settings.REPLICA_CHECK_SECONDS])
            assert cursor.fetchone()[1] == 1
    finally:
        stop.set()
        checker.join(5)


@pytest.mark.django_db
def test_a_stalled_check_shows_in_metrics_and_readiness(redis_settings, watchdog, settings):
    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(f"django_db_replica_{name}", {"alias": REPLICA})

    metrics.observe_replica(REPLICA, serving=True, lag_seconds=0.0)  # its last check's
    found(REPLICA, age=3 * settings.REPLICA_CHECK_SECONDS)
    # The check never completes, yet /metrics says 0 (ReplicaNotServing fires on it) and the
    # lag is not a figure it no longer knows.
    wait_until(lambda: gauge("serving") == 0, timeout=10, what="serving 0 for a stalled check")
    assert math.isnan(gauge("lag_seconds") or 0.0)
    assert readiness_get(timeout=2).checks[REPLICA] == {
        "ok": False,
        "serving": False,
        "reason": "stalled",
        "lag_seconds": None,
    }


def test_the_primary_gauge_follows_the_freshness_of_its_check(
    redis_settings, watchdog, settings, monkeypatch
):
    def reachable() -> float | None:
        return REGISTRY.get_sample_value("django_db_primary_reachable", {"alias": PRIMARY})

    def primary_checked(age: float) -> None:
        state = db.PrimaryState(1, 0, datetime.now(UTC), db.monotonic() - age)
        monkeypatch.setattr(db, "_primary", state)

    primary_checked(0.0)
    wait_until(lambda: reachable() == 1, timeout=10, what="reachable 1 after a check")
    # No check has reached it for three intervals (PgBouncer down, or its path to Postgres):
    # PrimaryUnreachableFromApp's gauge says so.
    primary_checked(3 * settings.REPLICA_CHECK_SECONDS)
    wait_until(lambda: reachable() == 0, timeout=10, what="reachable 0 for a stale check")


@pytest.mark.django_db
def test_readiness_says_null_for_a_lag_too_large_to_measure(redis_settings, settings):
    found(REPLICA, "lagging")
    lagging = db._health[REPLICA]
    db._health = {
        **db._health,
        REPLICA: db.ReplicaHealth(False, "not_streaming", math.inf, lagging.checked_at),
    }
    check = readiness_get(timeout=2).checks[REPLICA]
    assert check["reason"] == "not_streaming"
    assert check["lag_seconds"] is None
    json.dumps(check, allow_nan=False)  # strict JSON, as /readyz is parsed


def primary_checked(monkeypatch: pytest.MonkeyPatch, age: float) -> None:
    """The primary's last check reached it `age` seconds ago; none follows, as when it hangs."""
    state = db.PrimaryState(1, 0, datetime.now(UTC), db.monotonic() - age)
    monkeypatch.setattr(db, "_primary", state)


@pytest.mark.django_db(transaction=True)
def test_a_query_for_a_primary_no_check_reaches_fails_at_once(monkeypatch):
    monkeypatch.setattr(db, "_checkers_pid", os.getpid())  # the checks run in this process
    primary_checked(monkeypatch, 2 * db.PRIMARY_STALL_SECONDS)
    with pytest.raises(DjangoOperationalError) as raised, connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT 1")
    assert db.connection_lost(raised.value)
    assert db.database_error_response(raised.value).status_code == 503
    primary_checked(monkeypatch, 0.0)  # a check reaches it again: queries go through
    with connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT 1")


def stalls_after(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The primary's check is fresh now and stalls from here on: stale `seconds` later."""
    monkeypatch.setattr(db, "PRIMARY_STALL_SECONDS", seconds)
    primary_checked(monkeypatch, 0.0)


@pytest.mark.django_db(transaction=True)
def test_a_read_in_flight_on_a_stalled_primary_is_cut(watchdog, monkeypatch):
    stalls_after(monkeypatch, 1.0)
    with pytest.raises(DjangoOperationalError) as raised, connections[PRIMARY].cursor() as cursor:
        cursor.execute(NEVER_ANSWERS)
    assert db.connection_lost(raised.value)
    connections[PRIMARY].close()  # cut: what a request's end does with a broken connection


@pytest.mark.django_db(transaction=True)
def test_a_transaction_in_flight_on_a_stalled_primary_is_cut_and_commits_nothing(
    watchdog, monkeypatch
):
    stalls_after(monkeypatch, 1.0)

    def create_then_hang() -> None:
        with transaction.atomic(using=PRIMARY), connections[PRIMARY].cursor() as cursor:
            cursor.execute("CREATE TABLE stall_probe (id int)")
            cursor.execute(NEVER_ANSWERS)

    with pytest.raises(DjangoOperationalError):
        create_then_hang()
    connections[PRIMARY].close()
    with connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT to_regclass('stall_probe') IS NULL")
        assert cursor.fetchone() == (True,)


@pytest.mark.django_db(transaction=True)
def test_an_autocommit_write_in_flight_on_a_stalled_primary_is_never_cut(watchdog, monkeypatch):
    stalls_after(monkeypatch, 0.5)
    with connections[PRIMARY].cursor() as cursor:
        # It may commit the moment it ends: cut, a committed write would answer an error.
        cursor.execute("DO $$ BEGIN PERFORM pg_sleep(2); END $$")
        cursor.execute("SELECT 1")  # the same connection, never shut


@pytest.fixture
def no_checks_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as before its first check: the real start, not conftest's stub."""
    monkeypatch.setattr(db, "_checkers_stopping", threading.Event())
    monkeypatch.setattr(db, "_checkers", {})
    monkeypatch.setattr(db, "_checkers_pid", None)
    monkeypatch.setattr(db, "_health", {})


@pytest.mark.django_db
def test_the_checks_start_once_per_process(redis_settings, monkeypatch, no_checks_yet):
    checkers_start()
    first = dict(db._checkers)
    try:
        assert set(first) == {PRIMARY, REPLICA, db.WATCHDOG}
        checkers_start()  # every later read: nothing started
        assert db._checkers == first
        # A forked child (a Gunicorn worker) has none of its parent's threads: it starts its own.
        monkeypatch.setattr(db, "_checkers_pid", -1)
        checkers_start()
        assert all(db._checkers[name] is not first[name] for name in first)
    finally:
        everything = [*first.values(), *db._checkers.values()]
        db.replica_checkers_stop(timeout=5)
        # The parent's threads are no longer in _checkers: stop joined only the child's. Each
        # of the parent's ends at its next look at the same stop event, once its check returns.
        for thread in everything:
            thread.join(5)
        assert not any(thread.is_alive() for thread in everything)


@pytest.mark.django_db
def test_no_check_starts_while_held_and_they_start_after(redis_settings, no_checks_yet):
    # A preloading master's warm-up (config/preload.py) reads while it must start no thread.
    with db.replica_checks_held():
        checkers_start()
        assert db._checkers == {}
    checkers_start()
    try:
        assert set(db._checkers) == {PRIMARY, REPLICA, db.WATCHDOG}
    finally:
        assert db.replica_checkers_stop(timeout=5) == 3
