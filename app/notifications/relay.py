"""This process's SMTP connection, kept open from one email to the next.

Opening one is a TCP connect and EHLO (and STARTTLS and AUTH, with EMAIL_USE_TLS and a user),
and closing it a QUIT: per email, most of a send. Reused, it is checked with a NOOP first (given
NOOP_TIMEOUT, not EMAIL_TIMEOUT), so a connection the server dropped meanwhile (its idle timeout,
a restart) is replaced before anything is handed off and never costs an email a failed attempt.
One idle longer than IDLE_SECONDS is not reused at all: a NAT or firewall may have dropped it
without a word, and a NOOP would only wait. A connection an exchange failed on, or was
interrupted on (a time limit), is in an unknown state: it is discarded, its socket closed
without a QUIT that could wait for an answer. Each Celery pool process opens its own in its
first task; a forked child never uses its parent's, and a process that ends says QUIT.
"""

import logging
import os
import smtplib
import time

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

log = logging.getLogger(__name__)

# Everything smtplib and the socket under it raise for a refused, dropped or timed-out exchange.
SEND_ERRORS = (smtplib.SMTPException, OSError)
# Seconds a reused connection's NOOP (and the QUIT when a process ends) may wait for its answer.
NOOP_TIMEOUT = 2.0
# A connection unused this long is replaced, not checked.
IDLE_SECONDS = 60.0


class _Held:
    def __init__(self, backend: BaseEmailBackend) -> None:
        # A change of backend or server (a test's settings) opens a new one.
        self.opened_with = _opened_with()
        self.backend = backend
        self.used = time.monotonic()


_held: _Held | None = None


def _opened_with() -> tuple[object, ...]:
    return (settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT)


def _session(held: _Held | None) -> smtplib.SMTP | None:
    """The held connection's open SMTP session: None for none, or a backend without a server."""
    backend = held.backend if held is not None else None
    return backend.connection if isinstance(backend, SMTPBackend) else None


def _wait_at_most(session: smtplib.SMTP, seconds: float | None) -> None:
    if session.sock is not None:
        session.sock.settimeout(seconds)


def _answers(held: _Held) -> bool:
    if not isinstance(held.backend, SMTPBackend):
        return True  # locmem, console: no server to lose
    session = _session(held)
    if session is None or time.monotonic() - held.used > IDLE_SECONDS:
        return False
    try:
        _wait_at_most(session, NOOP_TIMEOUT)
        code, _ = session.noop()
        _wait_at_most(session, held.backend.timeout)
    except SEND_ERRORS:
        return False
    return code == 250


def relay_connection() -> BaseEmailBackend:
    """The open connection, checked; a new one when there is none or it may not answer.
    Raises SEND_ERRORS when the server cannot be reached."""
    global _held
    held = _held
    if held is not None and held.opened_with == _opened_with() and _answers(held):
        held.used = time.monotonic()
        return held.backend
    relay_discard()
    backend: BaseEmailBackend = get_connection(fail_silently=False)
    backend.open()
    _held = _Held(backend)
    return backend


def relay_discard() -> None:
    """Forgets the connection and closes its socket, saying nothing to the server: after a
    failed or interrupted exchange its state is unknown, and a QUIT could wait for an answer."""
    global _held
    held, _held = _held, None
    session = _session(held)
    if session is not None:
        try:
            session.close()
        except OSError:
            log.debug("closing the SMTP socket failed", exc_info=True)


def relay_close() -> None:
    """Says QUIT (waiting at most NOOP_TIMEOUT) and forgets the connection: a process that
    ends."""
    session = _session(_held)
    if session is not None:
        try:
            _wait_at_most(session, NOOP_TIMEOUT)
            session.quit()
        except SEND_ERRORS:
            log.debug("QUIT on the SMTP connection failed", exc_info=True)
    relay_discard()


def _forget_in_child() -> None:
    # The parent's connection is the parent's: a child that wrote to it would interleave.
    global _held
    _held = None


os.register_at_fork(after_in_child=_forget_in_child)
