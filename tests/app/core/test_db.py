"""The replica-down marks: shared through the real test Redis, kept per process for a second."""

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.db import DatabaseError, OperationalError, connections, transaction
from django.test import RequestFactory

from config.api import api
from core import db
from core.db_router import PRIMARY, REPLICA
from tests.support import wait_until


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


def test_a_burst_of_reads_asks_redis_once_per_local_ttl(redis_settings, state_client, clock):
    before = _gets(state_client)
    assert [db.read_alias() for _ in range(50)] == [REPLICA] * 50
    assert _gets(state_client) - before == 1
    clock(db.REPLICA_DOWN_LOCAL_TTL_SECONDS)
    assert db.read_alias() == REPLICA
    assert _gets(state_client) - before == 2


def test_marking_the_replica_down_and_up_counts_at_once_in_this_process(
    redis_settings, state_client, clock
):
    assert db.read_alias() == REPLICA  # the local copy now says "up"
    before = _gets(state_client)
    db.replica_mark_down(alias=REPLICA)
    assert db.read_alias() == PRIMARY
    assert caches["state"].get(db.replica_down_key(REPLICA))  # shared with the other processes
    db.replica_mark_up(alias=REPLICA)
    assert db.read_alias() == REPLICA
    assert caches["state"].get(db.replica_down_key(REPLICA)) is None
    # Only the two checks above asked Redis; the reads used the local copy the marks updated.
    assert _gets(state_client) - before == 2


def test_a_hung_redis_is_asked_for_the_marks_once_per_retry_interval(settings, clock, blackhole):
    # The marks' Redis accepts and never answers: the read past the local TTL waits out the
    # client's timeout once and takes "up"; the next ones take it without asking, until
    # REPLICA_RETRY_AFTER_SECONDS, instead of each waiting again every second.
    settings.CACHES = {
        **settings.CACHES,
        "state": {**settings.CACHES["state"], "LOCATION": f"redis://127.0.0.1:{blackhole.port}/3"},
    }
    assert db.read_alias() == REPLICA
    asked = wait_until(lambda: len(blackhole.accepted), timeout=10, what="the mark asked")
    for _ in range(5):
        clock(db.REPLICA_DOWN_LOCAL_TTL_SECONDS)
        assert db.read_alias() == REPLICA
    assert len(blackhole.accepted) == asked
    clock(settings.REPLICA_RETRY_AFTER_SECONDS)
    assert db.read_alias() == REPLICA
    wait_until(lambda: len(blackhole.accepted) > asked, timeout=10, what="the mark asked again")


def test_another_processs_mark_reaches_this_one_within_the_local_ttl(redis_settings, clock):
    assert db.read_alias() == REPLICA
    caches["state"].set(db.replica_down_key(REPLICA), 1)  # as another worker's failed read does
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
    db.replica_mark_up(alias=REPLICA)


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


# Errors of the query on a replica that answered. The replica alias is the primary's mirror in
# this suite, so each comes from a real server on the replica alias's connection: a real
# statement timeout and lock timeout; the recovery conflicts, which need a hot standby, raised
# by the server with their SQLSTATE (RAISE ... USING ERRCODE).
def _raise(code: str, message: str) -> list[str]:
    return [f"DO $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{code}'; END $$"]


QUERY_ERRORS = {
    "57014": ["SET LOCAL statement_timeout = '50ms'", "SELECT pg_sleep(30)"],
    # A lock held by another session (below) that this one waits for.
    "55P03": ["SET LOCAL lock_timeout = '50ms'", "SELECT pg_advisory_xact_lock(4242)"],
    "40001": _raise("40001", "canceling statement due to conflict with recovery"),
    "57P04": _raise("57P04", "terminating connection due to conflict with recovery"),
}
# The server cannot serve the connection: a backend terminated by an administrator (real), and
# the code PgBouncer sends for its own failures (query_wait_timeout, server conn crashed?).
CONNECTION_ERRORS = {
    "57P01": ["SELECT pg_terminate_backend(pg_backend_pid())"],
    "08P01": _raise("08P01", "query_wait_timeout"),
}


def _replica_query(statements: list[str], seen: list[str]) -> Callable[[str], str]:
    def query(alias: str) -> str:
        seen.append(alias)
        if alias == REPLICA:
            with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql)
        return alias

    return query


def _run(how: str, query: Callable[[str], str]) -> str:
    if how == "read":
        return db.read(query)
    return asyncio.run(db.aread(sync_to_async(query)))


@pytest.fixture
def advisory_lock_held(django_db_setup: None) -> Iterator[None]:
    """Another session holds the advisory lock the lock-timeout query waits for."""
    params = connections[PRIMARY].get_connection_params()
    other = psycopg.connect(**params)
    other.execute("SELECT pg_advisory_lock(4242)")
    yield
    other.close()


@pytest.mark.django_db(databases=["default", "replica"], transaction=True)
@pytest.mark.parametrize("how", ["read", "aread"])
@pytest.mark.parametrize("code", sorted(QUERY_ERRORS))
def test_a_query_error_on_the_replica_propagates_and_leaves_it_up(
    redis_settings, clock, advisory_lock_held, how, code
):
    seen: list[str] = []
    with pytest.raises(DatabaseError) as caught:
        _run(how, _replica_query(QUERY_ERRORS[code], seen))
    assert db.sqlstate(caught.value) == code
    assert seen == [REPLICA]  # the heavy query is not rerun on the primary
    db.replica_down_forget()
    assert caches["state"].get(db.replica_down_key(REPLICA)) is None
    assert db.read_alias() == REPLICA


@pytest.mark.django_db(databases=["default", "replica"], transaction=True)
@pytest.mark.parametrize("how", ["read", "aread"])
@pytest.mark.parametrize("code", sorted(CONNECTION_ERRORS))
def test_a_connection_error_on_the_replica_marks_it_down_and_falls_back(
    redis_settings, clock, how, code
):
    seen: list[str] = []
    assert _run(how, _replica_query(CONNECTION_ERRORS[code], seen)) == PRIMARY
    assert seen == [REPLICA, PRIMARY]
    assert caches["state"].get(db.replica_down_key(REPLICA))
    db.replica_mark_up(alias=REPLICA)


@pytest.mark.parametrize("how", ["read", "aread"])
def test_a_refused_connection_has_no_sqlstate_and_falls_back(
    redis_settings, clock, closed_port, how
):
    seen: list[str] = []

    def query(alias: str) -> str:
        seen.append(alias)
        if alias == REPLICA:
            # The client library's own failure, wrapped as Django wraps the ORM's.
            with connections[REPLICA].wrap_database_errors:
                psycopg.connect(host="127.0.0.1", port=closed_port, connect_timeout=5)
        return alias

    assert _run(how, query) == PRIMARY
    assert seen == [REPLICA, PRIMARY]
    assert caches["state"].get(db.replica_down_key(REPLICA))
    db.replica_mark_up(alias=REPLICA)


@pytest.mark.django_db(databases=["default", "replica"], transaction=True)
@pytest.mark.parametrize(
    ("code", "error"),
    [("57014", "query_timeout"), ("40001", "database_busy"), ("57P04", "database_busy")],
)
def test_a_query_error_is_a_json_503_that_names_it(redis_settings, code, error):
    with pytest.raises(DatabaseError) as caught:
        _replica_query(QUERY_ERRORS[code], [])(REPLICA)
    response = api.on_exception(RequestFactory().get("/api/products/1"), caught.value)
    assert response.status_code == 503
    assert response["Retry-After"]
    assert json.loads(response.content)["error"]["code"] == error


def test_a_forked_process_starts_without_its_parents_view_of_the_marks(monkeypatch):
    # A preloading master's warm-up may have remembered Redis failing, for a while: a worker
    # forked from it asks Redis itself.
    monkeypatch.setattr(db, "_replica_down_seen", {"replica": (False, 1e12)})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, b"%d" % len(db._replica_down_seen))
        finally:
            os._exit(0)
    os.close(write)
    seen = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == b"0"
