"""The transactional outbox: an email is written with the event it tells about and sent by a
relay, at most once, with nothing lost when the broker or a worker dies.

Writing. Each domain composes its own emails (in its own notifications module) and
hands them to outbox_email_create inside the transaction of the event they tell about (an
order's, a report's completion), so the email exists exactly when the event does. This app
imports no domain: it stores and sends what it is given. After the commit the relay task is
enqueued; when the broker is down then, the request still succeeds: the row is pending, and the
sweeper (beat, every OUTBOX_SWEEP_SECONDS) sends whatever is due.

Sending, one statement decides who sends:
1. Claim: UPDATE ... SET state='sending' WHERE id=... AND state='pending' AND next_attempt_at <=
   now(). Of two relays racing for a row (the on-commit task and a sweep, a redelivered message,
   a retry) at most one changes it; the other sends nothing.
2. Open the SMTP connection (or check this process's open one with a NOOP: relay.py), record
   handed_off_at, run the SMTP transaction.
3. Mark sent: UPDATE ... WHERE state='sending'.

The crash windows, and the choice made for each:
- Claimed, handed_off_at not set (the connection was being opened or checked): nothing reached
  the server. The sweeper returns the row to pending once the claim is older than
  OUTBOX_CLAIM_TIMEOUT (longer than the relay's hard time limit, so a live relay is never
  overtaken); it is sent later.
- handed_off_at set, not marked sent (the SMTP exchange itself, milliseconds): the server may have
  accepted the message. At most once here: the sweeper marks the row failed ("outcome unknown")
  and logs an error with the Message-ID for an operator to look up in the relay's log; it is
  never resent automatically. A second confirmation costs more trust than a missing one an
  operator can resend, and the window is one SMTP exchange long.
- An SMTP error (refused connection, timeout, 4xx/5xx reply): a server accepts a message only
  with its 250 reply to the data, so nothing was delivered; the row is retried after
  OUTBOX_RETRY_BACKOFF_SECONDS x 2^(attempt-1), capped at OUTBOX_RETRY_BACKOFF_MAX_SECONDS, and
  marked failed with the last error after OUTBOX_MAX_ATTEMPTS attempts.
"""

import logging
import smtplib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from functools import partial
from typing import Literal

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import sanitize_address
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.db_router import PRIMARY
from core.orm import insert_unless_exists, update_returning
from core.queue import task_publish
from notifications.models import OutboxEmail
from notifications.relay import SEND_ERRORS, relay_connection, relay_discard

log = logging.getLogger(__name__)
State = OutboxEmail.State

# A claim older than this is abandoned: longer than the relay task's hard time limit.
OUTBOX_CLAIM_TIMEOUT = timedelta(seconds=settings.EMAIL_TIME_LIMIT + 60)


@dataclass(frozen=True)
class Delivery:
    status: Literal["sent", "retry", "failed", "skipped"]
    # Seconds until the row is due again (status "retry").
    retry_in: float | None = None


def _message_id(key: str) -> str:
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
    return f"<{key.replace(':', '.')}.{uuid.uuid4().hex}@{domain}>"


def outbox_email_create(*, key: str, to: str, subject: str, body: str) -> OutboxEmail:
    """Writes the email in the caller's transaction; the relay is enqueued after its commit.

    The key names the event: writing the same key again returns the first row, unchanged.
    """
    email, created = insert_unless_exists(
        OutboxEmail(key=key, recipient=to, subject=subject, body=body, message_id=_message_id(key)),
        unique_field="key",
        using=PRIMARY,
    )
    if created:
        transaction.on_commit(partial(outbox_email_enqueue, email_id=email.pk), using=PRIMARY)
    return email


def outbox_email_enqueue(*, email_id: int) -> None:
    """Hands the relay task to the broker; a broker outage is logged, never raised.

    Runs after the order's commit, in the request: the order exists, so the client must get its
    201. The pending row is the truth; the sweeper sends it when the broker is back.
    """
    from notifications.tasks import outbox_email_send  # the tasks module imports this one

    task_publish(
        task=outbox_email_send,
        kwargs={"email_id": email_id},
        what=f"email {email_id}",
        later="the outbox sweeper will send it",
    )


@transaction.atomic(using=PRIMARY)
def outbox_email_resend(*, email_ids: Iterable[int]) -> tuple[int, int]:
    """An operator's "send again" (the admin): each chosen email back to pending, due now, with
    its attempts reset and a new Message-ID (the recipient's side drops a message whose ID it
    has seen), and the relay enqueued after the commit. Never sent here, in the request.

    An email a relay holds right now (sending) is left alone: resetting it could send it twice.
    Returns (queued, skipped).
    """
    rows = list(
        OutboxEmail.objects.using(PRIMARY)
        .select_for_update()
        .filter(pk__in=list(email_ids))
        .order_by("pk")
    )
    queued = [email for email in rows if email.state != State.SENDING]
    now = timezone.now()
    for email in queued:
        email.state = State.PENDING
        email.attempts = 0
        email.next_attempt_at = now
        email.claimed_at = email.handed_off_at = email.sent_at = None
        email.last_error = ""
        email.message_id = _message_id(email.key)
        email.save(
            using=PRIMARY,
            update_fields=[
                "state",
                "attempts",
                "next_attempt_at",
                "claimed_at",
                "handed_off_at",
                "sent_at",
                "last_error",
                "message_id",
            ],
        )
        transaction.on_commit(partial(outbox_email_enqueue, email_id=email.pk), using=PRIMARY)
        log.info(
            "email %s to %s queued to send again as %s",
            email.key,
            email.recipient,
            email.message_id,
        )
    return len(queued), len(rows) - len(queued)


def _backoff(attempts: int) -> float:
    delay: float = settings.OUTBOX_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    return min(delay, settings.OUTBOX_RETRY_BACKOFF_MAX_SECONDS)


def _claim(email_id: int) -> OutboxEmail | None:
    now = timezone.now()
    claimed = update_returning(
        OutboxEmail.objects.filter(pk=email_id, state=State.PENDING, next_attempt_at__lte=now),
        using=PRIMARY,
        state=State.SENDING,
        claimed_at=now,
        handed_off_at=None,
        attempts=F("attempts") + 1,
    )
    return claimed[0] if claimed else None


def _after_error(email: OutboxEmail, exc: BaseException) -> Delivery:
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    rows = OutboxEmail.objects.using(PRIMARY).filter(pk=email.pk, state=State.SENDING)
    if email.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        rows.update(state=State.FAILED, last_error=reason, handed_off_at=None)
        log.error("email %s failed after %s attempts: %s", email.key, email.attempts, reason)
        return Delivery("failed")
    delay = _backoff(email.attempts)
    rows.update(
        state=State.PENDING,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error=reason,
        handed_off_at=None,
    )
    log.warning(
        "email %s not sent (attempt %s), retry in %ss: %s", email.key, email.attempts, delay, reason
    )
    return Delivery("retry", retry_in=delay)


def _undeliverable(email: OutboxEmail, exc: ValueError) -> Delivery:
    """A message no retry can send (an address the mail libraries refuse): failed at once, and
    said so, before any SMTP exchange, so the row never looks as if it might have gone out."""
    reason = f"undeliverable, nothing sent: {exc}"[:1000]
    OutboxEmail.objects.using(PRIMARY).filter(pk=email.pk, state=State.SENDING).update(
        state=State.FAILED, last_error=reason, handed_off_at=None
    )
    log.error("email %s to %r: %s", email.key, email.recipient, reason)
    return Delivery("failed")


def outbox_email_deliver(*, email_id: int) -> Delivery:
    """Claims one due email and sends it over this process's SMTP connection (relay.py);
    "skipped" when another relay has it or it is not due."""
    email = _claim(email_id)
    if email is None:
        return Delivery("skipped")
    message = EmailMessage(
        subject=email.subject,
        body=email.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email.recipient],
        headers={"Message-ID": email.message_id},
    )
    try:
        # What the SMTP backend would build and refuse mid-exchange, built before it starts.
        message.message()
        sanitize_address(email.recipient, settings.DEFAULT_CHARSET)
    except ValueError as exc:
        return _undeliverable(email, exc)
    try:
        # Connected (or a reused connection answered its NOOP) before the hand-off is recorded.
        smtp = relay_connection()
        OutboxEmail.objects.using(PRIMARY).filter(pk=email.pk, state=State.SENDING).update(
            handed_off_at=timezone.now()
        )
        if smtp.send_messages([message]) != 1:
            raise smtplib.SMTPException("the server accepted the message for no recipient")
    except SEND_ERRORS as exc:
        relay_discard()
        return _after_error(email, exc)
    except BaseException:
        # Interrupted mid-exchange (the soft time limit): the connection's state is unknown.
        relay_discard()
        raise
    OutboxEmail.objects.using(PRIMARY).filter(pk=email.pk, state=State.SENDING).update(
        state=State.SENT, sent_at=timezone.now(), last_error=""
    )
    log.info("email %s sent to %s, %s", email.key, email.recipient, email.message_id)
    return Delivery("sent")


def outbox_claims_release() -> tuple[int, int]:
    """Abandoned claims: back to pending if nothing reached the server, else failed (unknown).

    Returns (released, unknown).
    """
    cutoff = timezone.now() - OUTBOX_CLAIM_TIMEOUT
    abandoned = OutboxEmail.objects.using(PRIMARY).filter(
        state=State.SENDING, claimed_at__lt=cutoff
    )
    released = abandoned.filter(handed_off_at__isnull=True).update(
        state=State.PENDING, next_attempt_at=timezone.now()
    )
    unknown = 0
    for email in abandoned.filter(handed_off_at__isnull=False):
        unknown += (
            OutboxEmail.objects.using(PRIMARY)
            .filter(pk=email.pk, state=State.SENDING, claimed_at=email.claimed_at)
            .update(
                state=State.FAILED,
                last_error=(
                    "outcome unknown: the relay stopped during the SMTP exchange; not resent "
                    "to avoid a duplicate"
                ),
            )
        )
        log.error(
            "email %s to %s: relay stopped during the SMTP exchange; check the relay's log for "
            "%s; if it is not there, resend it with the outbox admin's Send again action",
            email.key,
            email.recipient,
            email.message_id,
        )
    return released, unknown


def outbox_sweep(*, budget_seconds: float, limit: int = 500) -> dict[str, int]:
    """Sends what is due and left behind (broker down at commit, worker killed, retries).

    Over this process's SMTP connection, as the relay task does; stops at the first send error
    (the server is down or refusing: each row keeps its own backoff) or when the time budget is
    spent.
    """
    released, unknown = outbox_claims_release()
    due = list(
        OutboxEmail.objects.using(PRIMARY)
        .filter(state=State.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {"released": released, "unknown": unknown, "due": len(due), "sent": 0}
    if not due:
        return counts
    deadline = time.monotonic() + budget_seconds
    for email_id in due:
        if time.monotonic() > deadline:
            break
        delivery = outbox_email_deliver(email_id=email_id)
        if delivery.status == "sent":
            counts["sent"] += 1
        elif delivery.status != "skipped":
            break
    return counts
