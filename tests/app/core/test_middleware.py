import pytest


def test_liveness_answers_for_any_host_and_touches_nothing(client):
    # No django_db mark: any database access here would fail the test.
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_is_200_when_every_dependency_answers(client, redis_settings, replica_checks):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["checks"]) == {"primary", "replica", "redis", "redis_cache"}
    assert body["checks"]["primary"] == {"ok": True, "in_recovery": False}
    # The replica alias mirrors the primary here: the read path's check rightly finds it no
    # standby, so it would serve no read (the stack suite sees "ok" from real standbys).
    assert body["checks"]["replica"].get("reason") == "not_in_recovery", body
    assert (body["status"], body["failed"]) == ("degraded", ["replica"])


@pytest.mark.django_db
def test_readiness_is_200_degraded_naming_a_failed_soft_dependency(
    client, redis_settings, replica_checks
):
    redis_settings.REDIS_PORT = 1  # nothing listens there
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["failed"] == ["redis", "replica"]  # the mirror is no standby (above)
    assert body["checks"]["primary"]["ok"] is True
    assert "error" in body["checks"]["redis"]


@pytest.mark.django_db
def test_readiness_names_the_cache_instance_apart_from_the_broker(
    client, redis_settings, replica_checks
):
    redis_settings.REDIS_CACHE_PORT = 1  # the cache instance gone, the broker answering
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["failed"]) == ("degraded", ["redis_cache", "replica"])
    assert body["checks"]["redis"]["ok"] is True


@pytest.mark.django_db
def test_readiness_stays_200_degraded_while_the_replica_serves_reads(
    client, redis_settings, monkeypatch
):
    from core import db, selectors

    # The unit suite has no standby (the replica alias mirrors the primary): the replica's
    # check answers as a real one does once the primary it streams from is down.
    monkeypatch.setattr(
        selectors,
        "replica_health_view",
        lambda **kwargs: db.ReplicaHealth(True, "ok", None, 0.0),
    )
    # Undone right after: DATABASES is one dict for the whole session, and every connection
    # opened later (a new thread's, the readiness check's) reads it.
    with monkeypatch.context() as patch:
        unreachable = {**redis_settings.DATABASES["default"], "PORT": "1"}
        patch.setitem(redis_settings.DATABASES, "default", unreachable)
        response = client.get("/readyz")
    # A primary outage hits every pod at once: 503 here would take them all out of the Service
    # and stop the reads the replica still serves.
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "degraded"
    assert body["failed"] == ["primary"]
    assert body["checks"]["replica"]["ok"] is True
    assert "error" in body["checks"]["primary"]


@pytest.mark.django_db
def test_readiness_is_503_when_no_database_is_reachable(
    client, redis_settings, monkeypatch, replica_checks_start
):
    with monkeypatch.context() as patch:
        for alias in ("default", "replica"):
            unreachable = {**redis_settings.DATABASES[alias], "PORT": "1"}
            patch.setitem(redis_settings.DATABASES, alias, unreachable)
        replica_checks_start(primary_answers=False)
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["primary", "replica"]
    # An unreachable replica says so in the documented fields, lag unknown.
    assert body["checks"]["replica"] == {
        "ok": False,
        "serving": False,
        "reason": "unreachable",
        "lag_seconds": None,
    }
