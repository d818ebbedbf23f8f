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

What commits (a COMMIT, a write outside a transaction) and the watchdog's answer exclude each
other (one lock): the watchdog does not answer while one is under way, nor once one succeeded
(the request answers itself, or Nginx does), and a request it answered cannot start one. So the
watchdog's 504 always means nothing was saved. A COMMIT whose connection stalls has an outcome
no one knows until it returns; web logs it if it ends past the deadline, and a client that had
Nginx's 504 meanwhile learns it by asking again with the same Idempotency-Key.
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

from core import logging as json_logging

log = logging.getLogger(__name__)

# PostgreSQL's transaction_timeout: the transaction ran past the time it was given.
SQLSTATE = "25P04"
# The 504 of a request of which nothing was saved: a refused write's, and the watchdog's.
NOTHING_SAVED = (
    "The application took too long to answer; nothing this request would have written was saved."
)
# A refused write's 504 when an earlier statement of the request had committed already.
PARTLY_SAVED = (
    "The application took too long to answer; what this request wrote after its deadline was "
    "not saved, but a part it wrote before was."
)

_lock = threading.Lock()


@dataclass(eq=False)
class Deadline:
    at: float  # monotonic()
    answered: bool = False  # the server has answered the client already (the watchdog's 504)
    committing: bool = False
    saved: bool = False  # a COMMIT, or a write outside a transaction, of the request succeeded
    saved_at: float = 0.0  # monotonic(), the last time it did


DEADLINE: ContextVar[Deadline | None] = ContextVar("write_deadline", default=None)


def _answered() -> bool:
    deadline = DEADLINE.get()
    return deadline is not None and deadline.answered


# Every line a request logs once its client has the watchdog's 504 says so (core.logging).
json_logging.answered = _answered


class WriteTooLate(OperationalError):
    sqlstate = SQLSTATE

    def __init__(self, message: str, *, saved_before: bool = False) -> None:
        super().__init__(message)
        self.saved_before = saved_before


def start(seconds: float) -> tuple[Deadline, Token[Deadline | None]]:
    """For the rest of this request (and the sync calls it makes): writes must commit within
    `seconds`. Returns the deadline and the token to reset it with."""
    deadline = Deadline(monotonic() + seconds)
    return deadline, DEADLINE.set(deadline)


def end(token: Token[Deadline | None]) -> None:
    DEADLINE.reset(token)


def answer(deadline: Deadline) -> bool | None:
    """The watchdog would answer the request 504 (NOTHING_SAVED). True: it may, and from then on
    no COMMIT of the request can start. False: it must not, something of the request was saved
    (the request answers itself, or Nginx does). None: a COMMIT is under way; ask again."""
    with _lock:
        if deadline.committing:
            return None
        if deadline.saved:
            return False
        deadline.answered = True
        return True


def _refuse(deadline: Deadline, what: str) -> None:
    late = monotonic() - deadline.at
    reason = "its client was answered already" if deadline.answered else f"{late:.1f}s late"
    log.warning(
        "refused %s past the request's deadline (%s): what it wrote since is not kept",
        what,
        reason,
        extra={
            "late_seconds": round(late, 3),
            "answered": deadline.answered,
            "saved_before": deadline.saved,
        },
    )
    raise WriteTooLate(
        f"The request ran past its deadline ({reason}); its {what} was refused.",
        saved_before=deadline.saved,
    )


def _due(deadline: Deadline) -> bool:
    return deadline.answered or monotonic() >= deadline.at


@contextmanager
def committing(what: str = "COMMIT") -> Iterator[None]:
    """Around what commits (a COMMIT, a write outside a transaction): refused past the deadline;
    meanwhile the watchdog does not answer, and once it succeeded the watchdog never does."""
    deadline = DEADLINE.get()
    if deadline is None:
        yield
        return
    with _lock:
        refuse = _due(deadline)
        deadline.committing = not refuse
    if refuse:
        _refuse(deadline, what)
    try:
        yield
    except BaseException:
        with _lock:
            deadline.committing = False
        raise
    now = monotonic()
    with _lock:
        deadline.committing = False
        deadline.saved = True
        deadline.saved_at = now
    late = now - deadline.at
    if late > 0:
        # Begun in time, ended past the deadline (a stalled connection, a lock at commit): the
        # client may have had Nginx's 504 meanwhile. Its Idempotency-Key replays what was saved.
        log.warning(
            "a %s begun in time ended %.1fs past the request's deadline: it was saved, and the "
            "client may have been answered 504 meanwhile",
            what,
            late,
            extra={"late_seconds": round(late, 3)},
        )


def autocommit_guard(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """An execute wrapper: a statement outside a transaction commits itself, so it is guarded
    as a COMMIT is, unless it is a SELECT."""
    if (
        DEADLINE.get() is None
        or context["connection"].in_atomic_block
        or sql[:32].lstrip()[:6].upper() == "SELECT"  # a prefix: no copy of a long statement
    ):
        return execute(sql, params, many, context)
    with committing("statement outside a transaction"):
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
