"""Django's PostgreSQL backend, with no write committing past its request's deadline
(core/write_deadline.py says why), and a health check (CONN_HEALTH_CHECKS) that costs no round
trip. settings.DATABASES names this package as the ENGINE."""

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq

from core import write_deadline


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(write_deadline.autocommit_guard)

    def _commit(self) -> None:
        with write_deadline.committing():
            super()._commit()  # type: ignore[misc]  # not in django-stubs

    def is_usable(self) -> bool:
        """Django's check sends SELECT 1 before a request's (or task's) first query: a round
        trip through PgBouncer to Postgres each time. An idle connection has nothing to read
        (PgBouncer sends an idle client nothing), so one whose socket is readable (the peer
        closed it, or sent the error it closes with: PgBouncer restarted or stopped, Postgres
        itself without PgBouncer) or reports a hang-up is not reused; one not idle (a
        transaction left open) gets Django's SELECT 1. What this cannot see, and SELECT 1
        could only by waiting on it: a peer gone without closing (its node lost). Its first
        query fails as a connection lost mid-request does: a write's JSON 503, a replica read
        answered by the primary (core/db.py)."""
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return bool(super().is_usable())
        # poll, not select: a worker's descriptors may number past select's 1024.
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        return not poller.poll(0)
