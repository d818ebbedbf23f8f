"""Reads about the platform itself: is each dependency reachable right now?"""

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.db import (
    database_connect,
    replica_checkers_start,
    replica_health_view,
    replica_mark_down,
    replica_mark_up,
)
from core.db_router import PRIMARY, replica_aliases
from core.tracing import untraced

# The app serves while either database answers: reads fall back to the primary (core/db.py), or
# come from the replica while writes answer a JSON 503; pages are served uncached without Redis.
# Readiness fails only when no database answers: a primary outage hits every pod at once, and
# taking them all out of the Service would stop the reads too (it is an alert instead,
# PostgresPrimaryDown in monitoring/rules/alerts.yml). Each replica is its alias's check
# ("replica", "replica2", ...).


@dataclass(frozen=True)
class Readiness:
    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, check in self.checks.items() if not check["ok"])

    @property
    def ready(self) -> bool:
        """Takes traffic: it can serve at least reads, so at least one database answers."""
        databases = ["primary", *replica_aliases()]
        return any(self.checks[name]["ok"] for name in databases if name in self.checks)


def _database_check(alias: str, timeout: float) -> dict[str, Any]:
    # Through the requests' own PgBouncer pool, not the checks': ok means a request's query gets
    # through now. After an outage PgBouncer reconnects each pool on its own schedule
    # (server_login_retry), and the checks' pool may be back before the requests' is.
    with database_connect(alias, timeout, application_name="readyz", checks_pool=False) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return {"in_recovery": bool(row and row[0])}


def _replica_check(
    alias: str, reached: "Future[dict[str, Any]] | None", timeout: float
) -> dict[str, Any]:
    # The read path's own view (core.db): a replica that answers yet is not a streaming standby
    # of this primary, lags past the bound, cannot be reached or whose check stalls serves no
    # read and so is not ok here either. A view that says it serves is up to a check interval
    # old, so the probe's own connection must reach it now too: PgBouncer stopped a moment ago
    # fails the primary and the replica at once, and "ready" must not rest on the last check.
    health = replica_health_view(alias=alias)
    lag = health.lag_seconds
    check: dict[str, Any] = {
        "ok": health.serving,
        "serving": health.serving,
        "reason": health.reason,
        # JSON has no Infinity, the lag of a replica behind since before the oldest primary
        # reading kept: null, as for a lag not known.
        "lag_seconds": lag if lag is not None and math.isfinite(lag) else None,
    }
    if not health.serving or reached is None:  # not probed: it served no read when asked
        return check
    if not reached.done():
        error, reason = f"no answer within {timeout:g}s", "stalled"
    elif (exc := reached.exception()) is not None:
        error, reason = f"{type(exc).__name__}: {exc}".strip()[:300], "unreachable"
    else:
        return check
    return {**check, "ok": False, "serving": False, "reason": reason, "error": error}


def _redis_check(host: str, port: int, password: str, timeout: float) -> dict[str, Any]:
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One try: redis-py's default ten retries with backoff would outlast the probe's budget
        # and report "no answer" for a Redis that refused at once.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    finally:
        client.close()
    return {}


def readiness_get(*, timeout: float) -> Readiness:
    """Checks every dependency concurrently; each gets `timeout` seconds, the whole no more.
    Each replica is this process's own check of it (started here if no read has yet), and a
    connection the probe makes now."""
    replica_checkers_start()
    probes: dict[str, Callable[[], dict[str, Any]]] = {
        "primary": lambda: _database_check(PRIMARY, timeout),
        # The broker instance (Celery, read-your-writes marks, login throttle) and the cache
        # instance (pages, stock copies): either down degrades, neither stops reads.
        "redis": lambda: _redis_check(
            settings.REDIS_HOST, settings.REDIS_PORT, settings.REDIS_PASSWORD, timeout
        ),
        "redis_cache": lambda: _redis_check(
            settings.REDIS_CACHE_HOST,
            settings.REDIS_CACHE_PORT,
            settings.REDIS_CACHE_PASSWORD,
            timeout,
        ),
    }
    replicas = replica_aliases()
    # A pool per call: a probe stuck behind a dead server must not block the next probe.
    pool = ThreadPoolExecutor(max_workers=len(probes) + len(replicas), thread_name_prefix="readyz")
    # Untraced: a probe's threads start with no context, so its calls would each start a trace.
    futures = {name: pool.submit(untraced(fn)) for name, fn in probes.items()}
    # Only the replicas the view says serve: one it already takes out of the reads (a frozen
    # server among them) would hold the probe to its timeout for nothing.
    reached = {
        alias: pool.submit(untraced(_database_check), alias, timeout)
        for alias in replicas
        if replica_health_view(alias=alias).serving
    }
    wait([*futures.values(), *reached.values()], timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)

    checks: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        if not future.done():
            checks[name] = {"ok": False, "error": f"no answer within {timeout:g}s"}
        elif (exc := future.exception()) is not None:
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
        else:
            checks[name] = {"ok": True, **future.result()}
    for alias in replicas:
        checks[alias] = _replica_check(alias, reached.get(alias), timeout)
    # Tell the other processes now, before a customer's request finds out the slow way: a
    # replica whose check reached it is up (whether it serves is each process's own check), one
    # that cannot be reached, or whose check stalls, is down.
    for alias in replicas:
        if checks[alias]["reason"] in {"unreachable", "stalled"}:
            replica_mark_down(alias=alias)
        elif checks[alias]["reason"] != "unchecked":
            replica_mark_up(alias=alias)
    return Readiness(ok=all(c["ok"] for c in checks.values()), checks=checks)
