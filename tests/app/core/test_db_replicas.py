"""Several replicas: reads spread over the ones this process's check found serving, a customer
sticks to one, a replica that is not serving (another primary's, lagging, its check stalled,
marked down) gets none, and with none serving the primary answers. The stack suite
(tests/stack/test_replicas.py) proves the check against real standbys."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import caches
from django.db import OperationalError
from prometheus_client import REGISTRY

from core import db
from core.db_router import PRIMARY, REPLICA, PrimaryReplicaRouter
from notifications.models import OutboxEmail

SECOND = "replica2"
SERVING = db.ReplicaHealth(True, "ok", 0.0, 1000.0)


@pytest.fixture
def two_replicas(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Two replica aliases; calling it sets what this process's check last found for each."""
    monkeypatch.setattr(db, "replica_aliases", lambda: [REPLICA, SECOND])

    def found(**health: db.ReplicaHealth) -> None:
        monkeypatch.setattr(db, "_health", {REPLICA: SERVING, SECOND: SERVING, **health})

    found()
    return found


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    now = [1000.0]
    monkeypatch.setattr(db, "monotonic", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def test_reads_spread_over_the_serving_replicas(redis_settings, two_replicas, clock):
    assert {db.read_alias() for _ in range(10)} == {REPLICA, SECOND}
    # A customer sticks to one replica: two serving ones never alternate under them.
    assert len({db.read_alias(user_id=7) for _ in range(10)}) == 1
    assert {db.read_alias(user_id=user) for user in range(10)} == {REPLICA, SECOND}


@pytest.mark.parametrize("reason", ["other_primary", "not_in_recovery", "not_streaming", "lagging"])
def test_a_replica_that_is_not_serving_gets_no_read(redis_settings, two_replicas, clock, reason):
    two_replicas(replica2=db.ReplicaHealth(False, reason, None, 1000.0))
    assert {db.read_alias() for _ in range(10)} == {REPLICA}
    assert {db.read_alias(user_id=user) for user in range(10)} == {REPLICA}
    assert PrimaryReplicaRouter().db_for_read(OutboxEmail) == REPLICA
    two_replicas(replica=db.ReplicaHealth(False, reason, None, 1000.0), replica2=SERVING)
    assert {db.read_alias() for _ in range(10)} == {SECOND}


def test_with_no_replica_serving_the_primary_answers(redis_settings, two_replicas, clock):
    lagging = db.ReplicaHealth(False, "lagging", 9.0, 1000.0)
    two_replicas(replica=lagging, replica2=lagging)
    assert db.read_alias() == db.read_alias(user_id=3) == PRIMARY
    assert PrimaryReplicaRouter().db_for_read(OutboxEmail) == PRIMARY


def test_a_stalled_check_takes_its_replica_out(redis_settings, two_replicas, clock, settings):
    # A frozen replica: its check hangs, so its last result ages; no read waits on it.
    clock(2 * settings.REPLICA_CHECK_SECONDS + 0.1)
    two_replicas(replica=db.ReplicaHealth(True, "ok", 0.0, db.monotonic()), replica2=SERVING)
    assert {db.read_alias() for _ in range(10)} == {REPLICA}


def test_a_replica_that_drops_a_read_is_skipped_for_the_others(redis_settings, two_replicas, clock):
    seen: list[str] = []

    def failing(alias: str) -> str:
        seen.append(alias)
        if alias != PRIMARY:
            raise OperationalError("server closed the connection unexpectedly")
        return alias

    assert db.read(failing, user_id=0) == PRIMARY  # the failed read is answered
    first = seen[0]
    assert caches["state"].get(db.replica_down_key(first))
    other = ({REPLICA, SECOND} - {first}).pop()
    assert {db.read_alias() for _ in range(10)} == {other}
    db.replica_mark_up(alias=first)


@pytest.mark.django_db
def test_the_check_finds_a_database_that_is_no_standby(redis_settings, replica_checks):
    # The real check against real Postgres: the replica alias mirrors the primary here, the same
    # cluster but not in recovery, so it must serve nothing.
    health = db.replica_health_view(alias=REPLICA)
    assert (health.serving, health.reason) == (False, "not_in_recovery")
    # /metrics says so too (ReplicaNotServing alerts on it).
    assert REGISTRY.get_sample_value("django_db_replica_serving", {"alias": REPLICA}) == 0
    assert {db.read_alias() for _ in range(10)} == {PRIMARY}


def _at(seconds: float) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def test_lag_is_the_age_of_the_oldest_write_not_replayed():
    # Readings every second: the LSN moved at 3 s (one write) after a quiet stretch.
    history = tuple((100 if t < 3 else 200, _at(t)) for t in range(5))
    primary = db.PrimaryState(1, 200, _at(5), 0.0, history)
    assert primary.lag_seconds(200) == 0.0  # replayed it all
    # Missing the write made between the readings at 2 s and 3 s: at most 3 s behind, never the
    # quiet stretch before it.
    assert primary.lag_seconds(100) == 3.0
    assert primary.lag_seconds(50) == float("inf")  # behind since before the oldest reading


@pytest.mark.django_db
def test_a_process_that_never_reached_the_primary_learns_its_identity_from_redis(
    redis_settings,
):
    # Started (or first read) while the primary was down: the identity another process shared
    # is what a replica is judged by; without it, no replica can be vouched for.
    with db.database_connect(PRIMARY, 5) as conn:
        db.primary_state_measure(primary=conn)  # shares it
        db._primary = db._primary_system_id = None  # the conftest's patch restores them
        assert db.replica_health_measure(replica=conn).reason == "not_in_recovery"
        db._primary_system_id = None
        caches["state"].delete(db.PRIMARY_SYSTEM_ID_KEY)
        assert db.replica_health_measure(replica=conn).reason == "other_primary"
