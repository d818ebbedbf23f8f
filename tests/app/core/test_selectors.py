import socket
from collections.abc import Iterator

import pytest

from core.selectors import readiness_get


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.mark.django_db
def test_a_dependency_that_hangs_is_reported_not_waited_for(
    settings, redis_settings, silent_server
):
    redis_settings.REDIS_PORT = silent_server
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
