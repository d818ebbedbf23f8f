"""Which database serves a read: the replica, unless the reader just wrote or it is down.

Read-your-writes: right after a customer writes, their reads go to the primary for
READ_YOUR_WRITES_SECONDS, so replica lag never hides their own new order. Fallback: a read that
cannot reach the replica is retried on the primary, and the replica is skipped for a short while.
A replica that answered with an error of the query (a timeout, a recovery conflict, a lock
timeout) is up: that error reaches the caller, and the query is not rerun on the primary.
"""

import logging
from collections.abc import Awaitable, Callable
from time import monotonic

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connections
from django.http import JsonResponse

from core.db_router import PRIMARY, REPLICA
from core.errors import error_response

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
    """The answer to a database error a view did not handle: a 503 that says which kind, never
    a 500. The API's handler (config/api.py) and DatabaseErrorMiddleware (other views) use it."""
    code = sqlstate(exc)
    if code == STATEMENT_TIMEOUT:
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


# Shared through Redis, so every worker and pod skips a dead replica once one of them (or a
# readiness probe) found it dead, instead of each paying PgBouncer's query_wait_timeout; and a
# probe that finds it healthy again clears the mark for all of them at once.
REPLICA_DOWN_KEY = "replica:down"
# Each process keeps its last look at that mark this long, so a burst of reads costs one Redis
# GET per second per process, not one per read; another process's mark reaches it within 1s,
# small beside REPLICA_RETRY_AFTER_SECONDS (10s) that the mark itself lives.
REPLICA_DOWN_LOCAL_TTL_SECONDS = 1.0
# (is down, monotonic time it expires); one tuple, replaced whole, so threads never see half.
_replica_down_seen: tuple[bool, float] = (False, 0.0)


def _recent_writer_key(user_id: int) -> str:
    return f"ryw:{user_id}"


def recent_write_mark(*, user_id: int) -> None:
    """Call after a customer's write commits."""
    try:
        caches["state"].set(
            _recent_writer_key(user_id), 1, timeout=settings.READ_YOUR_WRITES_SECONDS
        )
    except Exception:  # the cache is down: reads then go to the primary anyway (below)
        log.warning("read-your-writes mark not stored; cache unavailable", exc_info=True)


def _replica_down_remember(down: bool) -> None:
    global _replica_down_seen
    _replica_down_seen = (down, monotonic() + REPLICA_DOWN_LOCAL_TTL_SECONDS)


def replica_down_forget() -> None:
    """Drops this process's copy of the mark: the next read asks Redis (tests use it)."""
    global _replica_down_seen
    _replica_down_seen = (False, 0.0)


def replica_is_down() -> bool:
    fresh = _fresh_alias()
    if fresh is not None:
        return fresh == PRIMARY
    down = bool(caches["default"].get(REPLICA_DOWN_KEY))  # a cache outage reads as "up"
    _replica_down_remember(down)
    return down


def read_alias(*, user_id: int | None = None) -> str:
    if replica_is_down():
        return PRIMARY
    if user_id is None:
        return REPLICA
    try:
        recent = caches["state"].get(_recent_writer_key(user_id))
    except Exception:  # no way to know if they just wrote: the primary is always fresh
        return PRIMARY
    return PRIMARY if recent else REPLICA


def replica_mark_down() -> None:
    _replica_down_remember(True)  # this process reacts at once, others within the local TTL
    caches["default"].set(REPLICA_DOWN_KEY, 1, timeout=settings.REPLICA_RETRY_AFTER_SECONDS)


def replica_mark_up() -> None:
    _replica_down_remember(False)
    caches["default"].delete(REPLICA_DOWN_KEY)


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
        if alias != REPLICA or not connection_lost(exc):
            raise
        log.warning(FALLBACK, exc_info=True)
        _replica_abandon()
        return fn(PRIMARY)
    if result is None and primary_decides_missing and alias == REPLICA:
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
    of the replica-down mark is read inline."""
    alias = _fresh_alias() if user_id is None else None
    if alias is None:
        alias = await sync_to_async(read_alias)(user_id=user_id)
    try:
        result = await fn(alias)
    except DATABASE_ERRORS as exc:
        if alias != REPLICA or not connection_lost(exc):
            raise
        log.warning(FALLBACK, exc_info=True)
        # On the request's thread: its connection is the one the async ORM used.
        await sync_to_async(_replica_abandon)()
        return await fn(PRIMARY)
    if result is None and primary_decides_missing and alias == REPLICA:
        return await fn(PRIMARY)
    return result


FALLBACK = "replica read failed; falling back to the primary"


def _fresh_alias() -> str | None:
    """The alias for a read without a user, if this process's copy of the mark still holds."""
    down, expires = _replica_down_seen
    if monotonic() < expires:
        return PRIMARY if down else REPLICA
    return None


def _replica_abandon() -> None:
    replica_mark_down()
    connections[REPLICA].close()
