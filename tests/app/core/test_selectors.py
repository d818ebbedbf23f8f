from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches

from core import db
from core.db_router import PRIMARY, REPLICA
from core.selectors import readiness_get


@pytest.mark.django_db
def test_a_dependency_that_hangs_is_reported_not_waited_for(settings, redis_settings, blackhole):
    redis_settings.REDIS_PORT = blackhole.port
    # A budget the healthy primary meets even on a loaded machine; the silent Redis never does.
    report = readiness_get(timeout=3)
    assert report.checks["redis"]["ok"] is False
    assert "error" in report.checks["redis"]
    # Every dependency is reported, whatever the others do.
    assert set(report.checks) == {"primary", "replica", "redis", "redis_cache"}


@pytest.mark.django_db
def test_the_replica_check_is_the_read_paths_own(redis_settings, replica_checks):
    report = readiness_get(timeout=2)
    # Here the replica alias mirrors the primary: no standby, so it must serve no read, and the
    # probe says why; the stack suite sees real standbys serving.
    assert report.checks["replica"] == {
        "ok": False,
        "serving": False,
        "reason": "not_in_recovery",
        "lag_seconds": None,
    }


@pytest.mark.django_db
def test_a_redis_that_drops_the_connection_is_tried_once_and_reported(
    redis_settings, dropping_server
):
    # redis-py's default ten retries with backoff would outlast the probe's budget and report
    # "no answer" instead of the refusal itself.
    redis_settings.REDIS_HOST, redis_settings.REDIS_PORT = "127.0.0.1", dropping_server.port
    report = readiness_get(timeout=5)
    assert report.checks["redis"]["ok"] is False
    assert "no answer" not in report.checks["redis"]["error"]
    assert dropping_server.connections == 1


def _replica_last_checked_serving(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The replica's check found it serving a moment ago; the next one has not run yet (the
    interval is long here, so that view stays fresh whatever the probe waits)."""
    settings.REPLICA_CHECK_SECONDS = 30
    serving = db.ReplicaHealth(True, "ok", 0.0, db.monotonic())
    monkeypatch.setattr(db, "_health", {REPLICA: serving})


def _at_local_port(patch: pytest.MonkeyPatch, alias: str, port: int) -> None:
    # In a monkeypatch.context(), undone right after: DATABASES is one dict for the session.
    patch.setitem(django_settings.DATABASES[alias], "PORT", port)
    patch.setitem(django_settings.DATABASES[alias], "HOST", "127.0.0.1")


def _probed_down(check: dict[str, Any], reason: str) -> None:
    assert (check["ok"], check["serving"], check["reason"]) == (False, False, reason)
    assert check["error"]
    # Marked down for the other processes, as a check that cannot reach it marks it.
    assert caches["state"].get(db.replica_down_key(REPLICA))
    db.replica_mark_up(alias=REPLICA)


@pytest.mark.django_db
def test_a_replica_last_checked_serving_but_unreachable_now_is_not_ready(
    settings, redis_settings, closed_port, monkeypatch
):
    # PgBouncer stopped a moment ago: the replica's check, up to an interval old, still says it
    # serves; the probe reaches it now, as it does the primary, and says it does not.
    _replica_last_checked_serving(monkeypatch, settings)
    with monkeypatch.context() as patch:
        _at_local_port(patch, REPLICA, closed_port)
        check = readiness_get(timeout=3).checks[REPLICA]
        # With the primary unreachable too, nothing can be served: the pod is not ready.
        _at_local_port(patch, PRIMARY, closed_port)
        ready = readiness_get(timeout=3).ready
    assert ready is False
    _probed_down(check, "unreachable")


@pytest.mark.django_db
def test_a_replica_last_checked_serving_that_does_not_answer_the_probe_is_stalled(
    settings, redis_settings, blackhole, monkeypatch
):
    _replica_last_checked_serving(monkeypatch, settings)
    with monkeypatch.context() as patch:
        _at_local_port(patch, REPLICA, blackhole.port)
        check = readiness_get(timeout=1).checks[REPLICA]
    assert "no answer" in check["error"]
    _probed_down(check, "stalled")


@pytest.mark.django_db
def test_a_replica_the_view_takes_out_of_the_reads_is_not_probed(
    settings, redis_settings, blackhole, monkeypatch
):
    # A frozen server's check stalls: the view already says it serves nothing, and a probe of
    # it would only hold every readiness answer to its timeout.
    settings.REPLICA_CHECK_SECONDS = 30
    stalled = db.ReplicaHealth(False, "stalled", None, db.monotonic())
    monkeypatch.setattr(db, "_health", {REPLICA: stalled})
    with monkeypatch.context() as patch:
        _at_local_port(patch, REPLICA, blackhole.port)
        check = readiness_get(timeout=1).checks[REPLICA]
    assert (check["ok"], check["reason"]) == (False, "stalled")
    assert "error" not in check
    assert blackhole.connections == 0
    db.replica_mark_up(alias=REPLICA)
