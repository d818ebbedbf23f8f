"""No write of a request commits after the server has told its client it took too long.

A request answered 504 may still be running: the watchdog (runtime/asgi.py) answers a request
whose thread is stuck in one call, but cannot stop the thread; Nginx answers a request whose
calls add up past its proxy_read_timeout, and nothing stops an async view when Nginx leaves.
Whatever the request wrote afterwards would commit, and a client told "took too long" who
asks again would place a second order.

So each request carries a deadline: its arrival plus Gunicorn's timeout, which sits below
Nginx's proxy_read_timeout so that a commit just in time and its answer still reach Nginx
(runtime/asgi.py under Uvicorn workers; WSGIDeadline under gthread, whose threads nothing
stops). Past it, or once the watchdog has answered the request:
- the COMMIT of a transaction is refused, and Django's atomic rolls the transaction back;
- a statement outside a transaction is refused unless it is a SELECT: it would commit itself.
The refusal is WriteTooLate, an OperationalError with PostgreSQL's own SQLSTATE for a
transaction past its time (25P04), answered as a JSON 504 saying nothing was saved
(core.db.database_error_response). Work outside a request (Celery, commands, tests) has no
deadline and is never refused.

A COMMIT and the watchdog's answer exclude each other (one lock): the watchdog does not answer
while a COMMIT is under way (the request answers itself once it ends), and a request it has
answered cannot start one. Each autocommit write is one statement, bounded by the role's
statement_timeout rather than the lock.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import monotonic
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.db import OperationalError

log = logging.getLogger(__name__)

# PostgreSQL's transaction_timeout: the transaction ran past the time it was given.
SQLSTATE = "25P04"

_lock = threading.Lock()


@dataclass(eq=False)
class Deadline:
    at: float  # monotonic()
    answered: bool = False  # the server has answered the client already (the watchdog's 504)
    committing: bool = False


DEADLINE: ContextVar[Deadline | None] = ContextVar("write_deadline", default=None)


class WriteTooLate(OperationalError):
    sqlstate = SQLSTATE


def start(seconds: float) -> tuple[Deadline, Token[Deadline | None]]:
    """For the rest of this request (and the sync calls it makes): writes must commit within
    `seconds`. Returns the deadline and the token to reset it with."""
    deadline = Deadline(monotonic() + seconds)
    return deadline, DEADLINE.set(deadline)


def end(token: Token[Deadline | None]) -> None:
    DEADLINE.reset(token)


def answer(deadline: Deadline) -> bool:
    """The watchdog is about to answer the request: True if it may (no COMMIT of the request is
    under way), and from then on none can start."""
    with _lock:
        if deadline.committing:
            return False
        deadline.answered = True
        return True


def _refuse(deadline: Deadline, what: str) -> None:
    late = monotonic() - deadline.at
    reason = "its client was answered already" if deadline.answered else f"{late:.1f}s late"
    log.warning(
        "refused %s past the request's deadline (%s): nothing it wrote is kept",
        what,
        reason,
        extra={"late_seconds": round(late, 3), "answered": deadline.answered},
    )
    raise WriteTooLate(
        f"The request ran past its deadline ({reason}); its {what} was refused and nothing "
        "it wrote was kept."
    )


def _due(deadline: Deadline) -> bool:
    return deadline.answered or monotonic() >= deadline.at


@contextmanager
def committing() -> Iterator[None]:
    """Around a COMMIT: refused past the deadline; meanwhile the watchdog does not answer."""
    deadline = DEADLINE.get()
    if deadline is None:
        yield
        return
    with _lock:
        if _due(deadline):
            refuse = True
        else:
            refuse = False
            deadline.committing = True
    if refuse:
        _refuse(deadline, "COMMIT")
    try:
        yield
    finally:
        with _lock:
            deadline.committing = False


def autocommit_guard(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """An execute wrapper: a statement outside a transaction commits itself, so past the
    deadline only a SELECT runs."""
    deadline = DEADLINE.get()
    if (
        deadline is not None
        and not context["connection"].in_atomic_block
        and _due(deadline)
        and sql.lstrip()[:6].upper() != "SELECT"
    ):
        _refuse(deadline, "statement outside a transaction")
    return execute(sql, params, many, context)


class WSGIDeadline:
    """A WSGI application whose every request has `seconds` to commit (config/wsgi.py)."""

    def __init__(self, application: WSGIHandler, *, seconds: float) -> None:
        self.application = application
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        _, token = start(self.seconds)
        try:
            return self.application(environ, start_response)
        finally:
            end(token)
