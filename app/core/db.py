"""Which database serves a read: one of the serving replicas, unless the reader just wrote.

A replica serves only while this process's own check (a thread per replica, every
REPLICA_CHECK_SECONDS) finds it a standby of THIS primary (same system identifier), with its
WAL receiver running (or nothing left to receive) and at most REPLICA_MAX_LAG_SECONDS behind;
a check that stalls (a frozen server) takes it out too, so a read never waits on it. Reads
spread over the serving replicas: a customer sticks to one of them, anonymous reads go round.
None serving: the primary.

Read-your-writes: right after a customer writes, their reads go to the primary for
READ_YOUR_WRITES_SECONDS. Any replica still missing that write by then lags more than the bound
(settings.py checks the sum), so it no longer serves: the order never vanishes. Fallback: a read
that cannot reach its replica is retried on the primary, and that replica is skipped for a short
while. A replica that answered with an error of the query (a timeout, a recovery conflict, a
lock timeout) is up: that error reaches the caller, and the query is not rerun on the primary.

A read already sent to a replica that then stops answering (frozen, killed behind PgBouncer) is
cut: each process's watchdog shuts the connection of every query in flight on a replica whose
check stalled or failed, once that query is older than the check window, so the read fails as a
lost connection and read()/aread() answer it from the primary. A replica that answers its
checks (lagging or not) never has a query cut.

The primary's check guards its queries the same way, with a longer window
(PRIMARY_STALL_SECONDS) and nothing to fall back on: once no check has reached it for that
long (frozen, or PgBouncer's path to it gone), a query is not sent but fails at once (the
client's JSON 503), and a query in flight is cut only where that can lose no committed write:
a read in autocommit, or any statement inside a transaction, which the cut rolls back (a
COMMIT goes through the connection, never a tracked cursor, and is never cut).
"""

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.http import JsonResponse
from django_redis import get_redis_connection

from core import metrics, write_deadline
from core.db_router import PRIMARY, replica_aliases
from core.errors import error_response
from core.tracing import untraced
from core.write_deadline import WriteTooLate

DATABASE_ERRORS = (OperationalError, InterfaceError)
log = logging.getLogger(__name__)

# SQLSTATEs that say "no usable connection": class 08 (PgBouncer sends its own failures, such as
# query_wait_timeout or "server conn crashed?", as 08P01), a server shutting down or restarting
# (57P01-57P03) and a server or pool out of connections (53300). The rest of class 57 and class
# 40 are the query's fate on a server that answered: a statement timeout (57014), a conflict
# with recovery on the hot standby (40001, 57P04); so is a lock timeout (55P03).
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
STATEMENT_TIMEOUT = "57014"
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "57P04", "55P03"})


def database_error_response(exc: BaseException) -> JsonResponse:
    """The answer to a database error a view did not handle: a 503 that says which kind (a 504
    for a write refused past its request's deadline), never a 500. The API's handler
    (config/api.py) and JsonErrorMiddleware (other views) use it."""
    code = sqlstate(exc)
    if isinstance(exc, WriteTooLate):
        # The request outlasted its deadline and its writes were refused (core/write_deadline.py):
        # the answer Nginx gives a request that took too long, with what became of it.
        message = write_deadline.PARTLY_SAVED if exc.saved_before else write_deadline.NOTHING_SAVED
        response = error_response(504, "gateway_timeout", message)
    elif code == STATEMENT_TIMEOUT:
        # statement_timeout (or an operator) cancelled the query: the server is up, the query
        # was too heavy for now.
        response = error_response(
            503, "query_timeout", "The query took too long and was cancelled; retry shortly."
        )
    elif code in RETRYABLE_SQLSTATES:
        # A conflict with recovery on the replica, a deadlock or a lock timeout: the same request
        # can succeed a moment later.
        response = error_response(
            503, "database_busy", "The database could not finish the query now; retry shortly."
        )
    else:
        # The primary (or PgBouncer) is unreachable: tell the client to come back, not that it
        # failed.
        response = error_response(
            503, "database_unavailable", "The database is unavailable; retry shortly."
        )
    response["Retry-After"] = "5"
    return response


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error Django wrapped (psycopg's error is its __cause__)."""
    code = getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) else None


def connection_lost(exc: BaseException) -> bool:
    """True if exc means the server could not be reached or dropped the connection.

    An error with no SQLSTATE came from the client library (refused, reset, closed): libpq and
    PgBouncer name every error a server or the pooler sends.
    """
    if isinstance(exc, InterfaceError):
        return True
    code = sqlstate(exc)
    return code is None or code.startswith("08") or code in CONNECTION_SQLSTATES


# Shared through Redis (the broker instance's "state" cache), so every worker and pod skips a
# dead replica once one of them (or a readiness probe) found it dead, instead of each paying
# PgBouncer's query_wait_timeout; and a probe that finds it healthy again clears the mark for
# all of them at once.
REPLICA_DOWN_KEY = "replica:down"
# Each process keeps its last look at that mark this long, so a burst of reads costs one Redis
# GET per second per process, not one per read; another process's mark reaches it within 1s,
# small beside REPLICA_RETRY_AFTER_SECONDS (10s) that the mark itself lives.
REPLICA_DOWN_LOCAL_TTL_SECONDS = 1.0
# alias -> (is down, monotonic time it expires); the dict is replaced whole, so threads never
# see half an update.
_replica_down_seen: dict[str, tuple[bool, float]] = {}


@dataclass(frozen=True)
class ReplicaHealth:
    """One check of one replica. reason: ok, other_primary (a standby of another cluster, or one
    whose data came from another initdb), not_in_recovery (a primary, not a standby),
    not_streaming (no WAL receiver), lagging, unreachable."""

    serving: bool
    reason: str
    lag_seconds: float | None
    checked_at: float  # monotonic, taken before the queries


# alias -> its last check, replaced whole by the checker threads.
_health: dict[str, ReplicaHealth] = {}
_checkers: dict[str, threading.Thread] = {}
_checkers_lock = threading.Lock()
# Set by each replica check: a process's first read waits (briefly) for one, rather than going
# to the primary, which may be the one that is down.
_checked = threading.Event()
_round_robin = itertools.count()


@dataclass(frozen=True)
class PrimaryState:
    system_id: int
    lsn: int
    clock: datetime  # the primary's own clock, when lsn was read
    measured_at: float  # monotonic
    # The earlier (lsn, clock) readings, oldest first: a replica that has replayed up to LSN R
    # lacks nothing written before the last reading at or below R, so its lag is at most the
    # time since that reading, and at least that minus one check. Not the time since its last
    # replayed commit, which after a quiet minute would call a replica a minute behind.
    history: tuple[tuple[int, datetime], ...] = ()

    def lag_seconds(self, replayed: int) -> float:
        if replayed >= self.lsn:
            return 0.0
        at_or_below = [clock for lsn, clock in self.history if lsn <= replayed]
        if not at_or_below:  # behind since before the oldest reading kept
            return float("inf")
        return (self.clock - at_or_below[-1]).total_seconds()


# Readings kept: enough to measure a lag well past any sane REPLICA_MAX_LAG_SECONDS.
PRIMARY_HISTORY = 120


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


# The primary's last state, from its own thread: a primary that stalls (down behind PgBouncer,
# whose clients wait query_wait_timeout) must not stall the replicas' checks with it.
_primary: PrimaryState | None = None
# Its identity from the last check that reached it: with the primary down, a replica of that
# cluster goes on serving reads (nothing newer exists to lag behind). Also kept in the broker
# Redis (which never evicts), for a process that starts, or reads first, while the primary is
# down.
_primary_system_id: int | None = None
PRIMARY_SYSTEM_ID_KEY = "primary:system_id"

PRIMARY_STATE_SQL = (
    "SELECT system_identifier, pg_current_wal_lsn()::text, clock_timestamp()"
    " FROM pg_control_system()"
)
# The app's role sees only the WAL receiver's pid (pg_stat_wal_receiver hides the rest): a pid
# means it runs; it exits at once if its primary has another system identifier.
REPLICA_STATE_SQL = (
    "SELECT system_identifier, pg_is_in_recovery(),"
    " EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL),"
    " coalesce(pg_last_wal_replay_lsn(), '0/0')::text"
    " FROM pg_control_system()"
)


def database_connect(
    alias: str,
    timeout: float,
    *,
    application_name: str = "replica-check",
    checks_pool: bool = True,
) -> psycopg.Connection[Any]:
    """A connection of its own, not Django's: a check or probe never borrows or poisons a
    request's. `checks_pool`: through PgBouncer's pool for the checks (_connect_params), else
    through the requests' own."""
    return psycopg.connect(**_connect_params(alias, timeout, application_name, checks_pool))


def _connect_params(
    alias: str, timeout: float, application_name: str, checks_pool: bool = True
) -> dict[str, Any]:
    """A connection's parameters for the alias: with `checks_pool`, PgBouncer's check database,
    whose pool no request holds (settings.DATABASE_CHECK_SUFFIX), so only the server or the path
    to it delays a check; without, the requests' own database and pool (/readyz)."""
    db = settings.DATABASES[alias]
    suffix = settings.DATABASE_CHECK_SUFFIX if checks_pool else ""
    return {
        "host": str(db["HOST"]),
        "port": str(db["PORT"]),
        "dbname": f"{db['NAME']}{suffix}",
        "user": str(db["USER"]),
        "password": str(db["PASSWORD"]),
        "connect_timeout": max(1, int(timeout)),
        "application_name": application_name,
        "autocommit": True,
    }


async def primary_answers(*, timeout: float) -> bool:
    """Whether the primary answers a query within `timeout`, bounded on this side whatever the
    server does (or PgBouncer, holding a query for a server it cannot reach), and on the event
    loop: a preloading master (config/preload.py) is left running nothing. A host name the
    resolver does not answer waits the resolver's own timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(**_connect_params(PRIMARY, timeout, "preload")),
            timeout,
        )
    except Exception:
        return False
    query = asyncio.ensure_future(conn.execute("SELECT 1"))
    done, _ = await asyncio.wait({query}, timeout=max(0.0, deadline - loop.time()))
    if not done:
        # psycopg, cancelled mid-query, would ask the server to cancel and wait for that: the
        # connection is ended first, so it has nothing left to wait on.
        conn.pgconn.finish()
        query.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await query
    answered = bool(done) and query.exception() is None
    with contextlib.suppress(Exception):
        await conn.close()
    return answered


def primary_state_measure(*, primary: psycopg.Connection[Any]) -> PrimaryState:
    global _primary, _primary_system_id
    measured_at = monotonic()
    row = primary.execute(PRIMARY_STATE_SQL).fetchone()
    assert row is not None
    history: tuple[tuple[int, datetime], ...] = ()
    if (previous := _primary) is not None and previous.system_id == int(row[0]):
        history = (*previous.history, (previous.lsn, previous.clock))[-PRIMARY_HISTORY:]
    state = PrimaryState(int(row[0]), _lsn(row[1]), row[2], measured_at, history)
    if _primary_system_id != state.system_id:
        try:
            caches["state"].set(PRIMARY_SYSTEM_ID_KEY, state.system_id, timeout=None)
        except Exception:
            log.warning("primary's system identifier not shared; cache unavailable", exc_info=True)
    _primary, _primary_system_id = state, state.system_id
    return state


def _primary_system_id_known() -> int | None:
    global _primary_system_id
    if _primary_system_id is None:
        try:
            shared = caches["state"].get(PRIMARY_SYSTEM_ID_KEY)
        except Exception:  # unknown: no replica can be vouched for
            shared = None
        _primary_system_id = int(shared) if shared is not None else None
    return _primary_system_id


def _primary_fresh() -> PrimaryState | None:
    state = _primary
    if state is None or monotonic() - state.measured_at > 2 * settings.REPLICA_CHECK_SECONDS:
        return None
    return state


def replica_health_measure(*, replica: psycopg.Connection[Any]) -> ReplicaHealth:
    """Compares the replica with the primary's latest state. Raises if the replica is down."""
    checked_at = monotonic()
    primary = _primary_fresh()
    row = replica.execute(REPLICA_STATE_SQL).fetchone()
    assert row is not None
    system_id, in_recovery, receiving, replayed = row
    known = primary.system_id if primary else _primary_system_id_known()
    if known is None or int(system_id) != known:
        return ReplicaHealth(False, "other_primary", None, checked_at)
    if not in_recovery:
        return ReplicaHealth(False, "not_in_recovery", None, checked_at)
    if primary is None:  # the primary is down (or stalled): nothing newer to lag behind
        return ReplicaHealth(True, "ok", None, checked_at)
    lag = primary.lag_seconds(_lsn(replayed))
    # No WAL receiver and behind: it will not catch up. Caught up, it holds exactly what the
    # primary last had (the primary stopping ends the receiver a moment before its own check
    # fails): it goes on serving.
    if not receiving and lag > 0:
        return ReplicaHealth(False, "not_streaming", lag, checked_at)
    if lag > settings.REPLICA_MAX_LAG_SECONDS:
        return ReplicaHealth(False, "lagging", lag, checked_at)
    return ReplicaHealth(True, "ok", lag, checked_at)


def replica_health_view(*, alias: str) -> ReplicaHealth:
    """This process's current view of the replica, no I/O (readiness reports it): its last
    check if fresh, else not serving: "stalled" (a check hangs, a frozen server) or
    "unchecked" (none finished yet)."""
    if (health := replica_health(alias=alias)) is not None:
        return health
    reason = "stalled" if alias in _health else "unchecked"
    return ReplicaHealth(False, reason, None, monotonic())


def _health_store(alias: str, health: ReplicaHealth) -> None:
    global _health
    previous = _health.get(alias)
    if previous is None or previous.reason != health.reason:
        # Once per change, so an operator sees why a replica left (or rejoined) the reads.
        level = logging.INFO if health.serving else logging.WARNING
        log.log(level, "replica %s: %s", alias, health.reason)
    _health = {**_health, alias: health}
    _checked.set()
    metrics.observe_replica(alias, serving=health.serving, lag_seconds=health.lag_seconds)


@dataclass
class _InFlight:
    alias: str
    fd: int
    started: float  # monotonic
    cuttable: bool = True  # False: an autocommit write on the primary, which may commit
    cut: bool = False


# How long the primary may go without a check reaching it before its queries fail fast and
# the cuttable ones in flight are cut: under PgBouncer's query_wait_timeout (10 s), which a
# query sent to a frozen primary would otherwise wait. A check never waits for the requests'
# pool (its own: _connect_params), so only the server or the path to it delays it.
PRIMARY_STALL_SECONDS = 5.0


# Queries now running on a replica connection of this process, by a token of their own; the
# lock makes "still running" and "socket shut" one step: a query leaves the registry (under the
# lock) before its thread can close or reuse the connection, so the fd shut is always its own.
_in_flight: dict[int, _InFlight] = {}
_in_flight_lock = threading.Lock()
_in_flight_tokens = itertools.count()


class _TrackedCursor(psycopg.Cursor[Any]):
    """Enters each query in _in_flight. At the psycopg level, from the connection's first
    statement: Django's own, outside its execute wrappers (the time zone it sets on a new
    connection, its health check of a kept one before a request's first query), would wait on
    a frozen replica too."""

    _alias = ""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        with _tracked_query(self._alias, self.connection, query):
            return super().execute(query, *args, **kwargs)

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        with _tracked_query(self._alias, self.connection, query):
            return super().executemany(query, *args, **kwargs)


def _cuttable(alias: str, conn: psycopg.Connection[Any], query: Any) -> bool:
    """A replica's query always; the primary's only if cutting it loses no committed write."""
    if alias != PRIMARY or not conn.autocommit:
        return True
    text = query if isinstance(query, str) else query.decode() if isinstance(query, bytes) else ""
    return text.lstrip().upper().startswith("SELECT")


@contextmanager
def _tracked_query(alias: str, conn: psycopg.Connection[Any], query: Any) -> Iterator[None]:
    if _checkers_pid == os.getpid() and not _answers(alias):
        # Checked, and stopped answering: a query sent now would wait like the ones in flight
        # (a read that began before its check stalled). It fails at once as a lost connection.
        raise psycopg.OperationalError(f"database {alias} stopped answering; query not sent")
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:  # no live connection: the query fails on its own
        yield
        return
    token = next(_in_flight_tokens)
    with _in_flight_lock:
        _in_flight[token] = _InFlight(alias, fd, monotonic(), _cuttable(alias, conn, query))
    try:
        yield
    finally:
        with _in_flight_lock:
            del _in_flight[token]


_tracked_cursors: dict[str, type] = {}


def _tracked_cursor(alias: str, base: type) -> type:
    if issubclass(base, _TrackedCursor):
        return base
    if alias not in _tracked_cursors:
        name = f"Tracked{base.__name__}"
        _tracked_cursors[alias] = type(name, (_TrackedCursor, base), {"_alias": alias})
    return _tracked_cursors[alias]


def database_queries_track() -> None:
    """Every cursor of every connection to the primary and the replicas (the ORM's, Django's
    own, raw ones) is tracked: its cursor class is given to psycopg.connect (core.apps, once
    Django is set up)."""
    from django.db.backends.postgresql.base import Cursor  # type: ignore[attr-defined]

    for alias in [PRIMARY, *replica_aliases()]:
        options: dict[str, Any] = settings.DATABASES[alias].setdefault("OPTIONS", {})  # type: ignore[assignment]
        options["cursor_factory"] = _tracked_cursor(alias, options.get("cursor_factory", Cursor))
    connection_created.connect(_connection_track, dispatch_uid="core.db.replica_track")


def _connection_track(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # A replica alias that connects with another alias's settings (the tests' mirrors).
    raw = connection.connection
    if connection.alias in replica_aliases() and raw is not None:
        raw.cursor_factory = _tracked_cursor(connection.alias, raw.cursor_factory)


def _answers(alias: str) -> bool:
    """Its check finished within the window and reached it (lagging or not: it answers), or
    it was never checked here (nothing known against it)."""
    if alias == PRIMARY:
        state = _primary
        return state is None or monotonic() - state.measured_at <= PRIMARY_STALL_SECONDS
    if alias not in _health:
        return True
    health = replica_health(alias=alias)
    return health is not None and health.reason != "unreachable"


def database_queries_cut() -> int:
    """Shuts the connections of the queries in flight on a database that stopped answering for
    longer than its window (a replica's check window; PRIMARY_STALL_SECONDS, and only the
    cuttable queries, on the primary). PgBouncer sees its client leave mid-query and drops the
    server link (never reused); the query fails as a lost connection: a replica's read falls
    back to the primary, the primary's is the client's JSON 503. Returns how many were cut."""
    now = monotonic()
    answers: dict[str, bool] = {}
    cut = 0
    with _in_flight_lock:
        for query in _in_flight.values():
            window = (
                PRIMARY_STALL_SECONDS
                if query.alias == PRIMARY
                else 2 * settings.REPLICA_CHECK_SECONDS
            )
            if query.cut or not query.cuttable or now - query.started <= window:
                continue
            if query.alias not in answers:
                answers[query.alias] = _answers(query.alias)
            if answers[query.alias]:
                continue
            _query_cut(query)
            cut += 1
    for alias, answering in answers.items():
        if not answering and alias == PRIMARY:
            log.warning("the primary stopped answering: its queries in flight were cut")
        elif not answering:
            # This process's reads skip it at once; the read that falls back marks it for all.
            _replica_down_remember(alias, True)
            log.warning("replica %s stopped answering: its queries in flight were cut", alias)
    return cut


def database_queries_cut_all() -> int:
    """Shuts the connection of every query in flight in this process, whatever its database's
    checks say (they may be held) and whether or not it may commit: a preloading master's
    warm-up that outlived its budget (config/preload.py), whose answers no client waits for.
    Returns how many were cut."""
    with _in_flight_lock:
        queries = [query for query in _in_flight.values() if not query.cut]
        for query in queries:
            _query_cut(query)
    return len(queries)


def _query_cut(query: _InFlight) -> None:
    try:
        # A dup, so the fd libpq owns is never closed here; shutdown acts on the socket both
        # share and wakes the thread waiting on it.
        with socket.socket(fileno=os.dup(query.fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        log.warning("could not cut a query on %s", query.alias, exc_info=True)
    query.cut = True


def _watchdog_run() -> None:
    """Every half check: cuts the queries of a replica that stopped answering, and says in
    /metrics what the routing sees (a stalled check sets no gauge of its own)."""
    while not _checkers_stopping.wait(settings.REPLICA_CHECK_SECONDS / 2):
        try:
            database_queries_cut()
            metrics.observe_primary(PRIMARY, reachable=_primary_fresh() is not None)
            for alias in replica_aliases():
                health = replica_health(alias=alias)
                if health is None and alias in _health:
                    metrics.observe_replica(alias, serving=False, lag_seconds=None)
        except Exception:
            log.exception("replica watchdog failed")


# Set by replica_checkers_stop (a stopping worker): the checks end and close their connections,
# so PgBouncer sees them leave with Terminate, not as a client that died.
_checkers_stopping = threading.Event()


def _checker_run(alias: str) -> None:
    """Checks one database every REPLICA_CHECK_SECONDS, until the process stops its checks."""
    conn: psycopg.Connection[Any] | None = None
    try:
        while not _checkers_stopping.is_set():
            checked_at = monotonic()
            try:
                if conn is None or conn.closed:
                    conn = database_connect(alias, 5 * settings.REPLICA_CHECK_SECONDS)
                if alias == PRIMARY:
                    primary_state_measure(primary=conn)
                    metrics.observe_primary(PRIMARY, reachable=True)
                else:
                    _health_store(alias, replica_health_measure(replica=conn))
            except Exception:
                if alias != PRIMARY:
                    _health_store(alias, ReplicaHealth(False, "unreachable", None, checked_at))
                if conn is not None:
                    conn.close()
                conn = None
            wait = max(0.0, settings.REPLICA_CHECK_SECONDS - (monotonic() - checked_at))
            _checkers_stopping.wait(wait)
    finally:
        if conn is not None:
            conn.close()


def replica_checkers_stop(*, timeout: float) -> int:
    """Ends this process's checks and closes their connections (a worker's shutdown); a check
    stuck on a frozen server is left after `timeout`. Returns how many ended."""
    _checkers_stopping.set()
    with _checkers_lock:
        threads = list(_checkers.values())
        _checkers.clear()
    for thread in threads:
        thread.join(timeout)
    return sum(not thread.is_alive() for thread in threads)


# The pid that started the checks: a forked child (a Gunicorn worker) has none of its parent's
# threads, so it starts its own.
_checkers_pid: int | None = None
WATCHDOG = "replica-watchdog"


def replica_checkers_start() -> None:
    """Starts this process's checks and watchdog, once (again in a forked child)."""
    global _checkers_pid, _health, _primary
    if _checkers_pid == os.getpid() or _checkers_stopping.is_set():
        return
    with _checkers_lock:
        if _checkers_pid == os.getpid():
            return
        # A forked child's copies are its parent's threads and view: it judges on its own checks.
        _checkers.clear()
        _health = {}
        # The parent's last reading of the primary ages from the fork: left, it would make this
        # child fail its primary queries (PRIMARY_STALL_SECONDS) before its own first check.
        _primary = None
        _checked.clear()
        targets: dict[str, tuple[Callable[..., None], tuple[str, ...]]] = {
            alias: (_checker_run, (alias,)) for alias in [PRIMARY, *replica_aliases()]
        }
        targets[WATCHDOG] = (_watchdog_run, ())
        for name, (target, args) in targets.items():
            thread = threading.Thread(
                target=untraced(target), args=args, name=f"check-{name}", daemon=True
            )
            thread.start()
            _checkers[name] = thread
        _checkers_pid = os.getpid()
    # Once per process (gunicorn.conf.py starts them as a worker starts, so requests rarely
    # wait here at all); a replica that does not answer in time is judged by later checks.
    _checked.wait(timeout=2 * settings.REPLICA_CHECK_SECONDS)


@contextmanager
def replica_checks_held() -> Iterator[None]:
    """No database check starts inside, so reads go to the primary, as before a process's first
    check: a preloading master's warm-up (config/preload.py), which forks holding no thread. A
    check of a replica that does not answer could outlast any wait for it to end."""
    global _checkers_stopping
    held = threading.Event()
    held.set()
    with _checkers_lock:
        running, _checkers_stopping = _checkers_stopping, held
    try:
        yield
    finally:
        with _checkers_lock:
            _checkers_stopping = running


def replica_health(*, alias: str) -> ReplicaHealth | None:
    """This process's last check of the replica, if recent enough to route by: one missed check
    is tolerated; a check stalled longer (a frozen server) counts as not serving."""
    health = _health.get(alias)
    if health is None or monotonic() - health.checked_at > 2 * settings.REPLICA_CHECK_SECONDS:
        return None
    return health


def _recent_writer_key(user_id: int) -> str:
    return f"ryw:{user_id}"


def replica_down_key(alias: str) -> str:
    return f"{REPLICA_DOWN_KEY}:{alias}"


def recent_write_mark(*, user_id: int) -> None:
    """Call after a customer's write commits."""
    try:
        caches["state"].set(
            _recent_writer_key(user_id), 1, timeout=settings.READ_YOUR_WRITES_SECONDS
        )
    except Exception:  # the cache is down: reads then go to the primary anyway (below)
        log.warning("read-your-writes mark not stored; cache unavailable", exc_info=True)


def _replica_down_remember(
    alias: str, down: bool, *, seconds: float = REPLICA_DOWN_LOCAL_TTL_SECONDS
) -> None:
    global _replica_down_seen
    expires = monotonic() + seconds
    _replica_down_seen = {**_replica_down_seen, alias: (down, expires)}


def _replica_down_ask(alias: str) -> bool:
    """The shared mark, as Redis holds it now, remembered for the local TTL. A Redis that fails
    or does not answer reads as "up" (the read's own failure marks a dead replica) and is not
    asked again for REPLICA_RETRY_AFTER_SECONDS: past each local TTL a read would otherwise
    wait out the client's timeout, every second, for as long as it hangs."""
    try:
        with metrics.cache_call("get"):
            key = caches["state"].make_key(replica_down_key(alias))
            held = get_redis_connection("state").get(key)
    except Exception:
        log.warning("replica-down mark unread; Redis unavailable", exc_info=True)
        _replica_down_remember(alias, False, seconds=settings.REPLICA_RETRY_AFTER_SECONDS)
        return False
    metrics.count_cache_get(hit=held is not None)
    _replica_down_remember(alias, held is not None)
    return held is not None


def replica_down_forget() -> None:
    """Drops this process's copy of the marks: the next read asks Redis (tests use it)."""
    global _replica_down_seen
    _replica_down_seen = {}


# A forked worker asks Redis itself: what its parent saw (a preloading master's warm-up, perhaps
# with Redis failing and so not asked again for a while) is not its own.
os.register_at_fork(after_in_child=replica_down_forget)


def _serving(*, ask_redis: bool | None) -> list[str] | None:
    """The replicas that may serve a read now. ask_redis False: None when a down mark's local
    copy expired (the caller asks again on a thread); None: this process's copy, expired or
    not (the router's choice, no I/O)."""
    replica_checkers_start()
    serving = []
    for alias in replica_aliases():
        health = replica_health(alias=alias)
        if health is None or not health.serving:
            continue
        down, expires = _replica_down_seen.get(alias, (False, 0.0))
        if ask_redis is not None and monotonic() >= expires:
            if not ask_redis:
                return None
            down = _replica_down_ask(alias)
        if not down:
            serving.append(alias)
    return serving


def _pick(serving: list[str], user_id: int | None) -> str:
    if not serving:
        return PRIMARY
    if user_id is None:
        return serving[next(_round_robin) % len(serving)]
    # A customer sticks to one replica while the set is the same.
    return serving[user_id % len(serving)]


def replica_for_read() -> str:
    """The router's choice for a read with no user: this process's view only, no I/O."""
    return _pick(_serving(ask_redis=None) or [], None)


def read_alias(*, user_id: int | None = None) -> str:
    serving = _serving(ask_redis=True) or []
    if not serving or user_id is None:
        return _pick(serving, user_id)
    try:
        recent = caches["state"].get(_recent_writer_key(user_id))
    except Exception:  # no way to know if they just wrote: the primary is always fresh
        return PRIMARY
    return PRIMARY if recent else _pick(serving, user_id)


def replica_mark_down(*, alias: str) -> None:
    _replica_down_remember(alias, True)  # this process reacts at once, others within the TTL
    try:
        caches["state"].set(
            replica_down_key(alias), 1, timeout=settings.REPLICA_RETRY_AFTER_SECONDS
        )
    except Exception:  # the others find out by their own failed reads
        log.warning("replica-down mark not shared; Redis unavailable", exc_info=True)


def replica_mark_up(*, alias: str) -> None:
    _replica_down_remember(alias, False)
    try:
        caches["state"].delete(replica_down_key(alias))
    except Exception:  # the mark expires on its own
        log.warning("replica-down mark not cleared; Redis unavailable", exc_info=True)


def read[T](
    fn: Callable[[str], T], *, user_id: int | None = None, primary_decides_missing: bool = False
) -> T:
    """Runs fn(alias) on the right database, retrying once on the primary if the replica cannot
    be reached (connection_lost); any other error of the replica's is the caller's.

    primary_decides_missing: None from the replica may mean "not replayed yet" (a row created a
    moment ago), so the primary is asked too. Reads are not rate-limited, so a flood of misses
    (ids that do not exist) costs the primary one indexed lookup each.
    """
    alias = read_alias(user_id=user_id)
    try:
        result = fn(alias)
    except DATABASE_ERRORS as exc:
        if alias == PRIMARY or not connection_lost(exc):
            raise
        log.warning(FALLBACK, exc_info=True)
        _replica_abandon(alias)
        return fn(PRIMARY)
    if result is None and primary_decides_missing and alias != PRIMARY:
        return fn(PRIMARY)
    return result


async def aread[T](
    fn: Callable[[str], Awaitable[T]],
    *,
    user_id: int | None = None,
    primary_decides_missing: bool = False,
) -> T:
    """read() for the async ORM. Redis is asked on the request's thread, never on the event loop
    (a silent Redis would stall every request of the worker): only this process's fresh copy
    of the replica-down marks is read inline."""
    alias: str | None = None
    if user_id is None and (serving := _serving(ask_redis=False)) is not None:
        alias = _pick(serving, None)
    if alias is None:
        alias = await sync_to_async(read_alias)(user_id=user_id)
    try:
        result = await fn(alias)
    except DATABASE_ERRORS as exc:
        if alias == PRIMARY or not connection_lost(exc):
            raise
        log.warning(FALLBACK, exc_info=True)
        # On the request's thread: its connection is the one the async ORM used.
        await sync_to_async(_replica_abandon)(alias)
        return await fn(PRIMARY)
    if result is None and primary_decides_missing and alias != PRIMARY:
        return await fn(PRIMARY)
    return result


FALLBACK = "replica read failed; falling back to the primary"


def _replica_abandon(alias: str) -> None:
    replica_mark_down(alias=alias)
    connections[alias].close()
