"""The outbox on the real test Postgres (and Redis as the broker where a test says so).

SMTP: Django's locmem backend (pytest-django's default) for what was sent, and a real refused
TCP connection for a server that is down. The stack suite runs the real relay against the mail
catcher. The emails the domains compose are tested with them, in each domain's own tests.
"""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from notifications.models import OutboxEmail
from notifications.services import (
    outbox_claims_release,
    outbox_email_create,
    outbox_email_deliver,
    outbox_sweep,
)

# Committed transactions: on-commit hooks run, and a second connection sees the rows.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)
State = OutboxEmail.State


@pytest.fixture
def smtp_down(settings, closed_port):
    """The real SMTP backend pointed at a port that refuses connections."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port, 2
    return settings


def make_due(email: OutboxEmail) -> None:
    OutboxEmail.objects.filter(pk=email.pk).update(next_attempt_at=timezone.now())


def test_the_relay_is_enqueued_on_the_email_queue_only_after_commit(celery_broker):
    with transaction.atomic(using="default"):
        email = outbox_email_create(key="k:1", to="a@example.com", subject="s", body="b")
        assert celery_broker.llen("email") == 0
    messages = [json.loads(raw) for raw in celery_broker.lrange("email", 0, -1)]
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "notifications.send_email"
    assert str(email.pk) in messages[0]["headers"]["kwargsrepr"]
    # Nothing on the other queues: mail never waits behind reports.
    assert celery_broker.llen("reports") == 0  # demo-shop
    assert celery_broker.llen("default") == 0


def test_writing_the_same_event_twice_keeps_one_email(broker_down):
    first = outbox_email_create(
        key="order-confirmation:7", to="a@example.com", subject="1", body=""
    )
    second = outbox_email_create(
        key="order-confirmation:7", to="b@example.com", subject="2", body=""
    )
    assert first.pk == second.pk
    assert OutboxEmail.objects.get().subject == "1"


def test_delivering_twice_sends_once(broker_down):
    email = outbox_email_create(key="k:2", to="a@example.com", subject="s", body="b")
    assert outbox_email_deliver(email_id=email.pk).status == "sent"
    assert outbox_email_deliver(email_id=email.pk).status == "skipped"
    assert len(mail.outbox) == 1
    email.refresh_from_db()
    assert email.state == State.SENT
    assert email.sent_at is not None
    assert email.attempts == 1


def test_a_row_another_relay_holds_is_not_sent_again(broker_down):
    email = outbox_email_create(key="k:3", to="a@example.com", subject="s", body="b")
    OutboxEmail.objects.filter(pk=email.pk).update(state=State.SENDING, claimed_at=timezone.now())
    assert outbox_email_deliver(email_id=email.pk).status == "skipped"
    assert outbox_sweep(budget_seconds=5)["sent"] == 0
    assert mail.outbox == []


def test_an_smtp_error_backs_off_exponentially_up_to_the_cap_then_fails(
    broker_down, smtp_down, settings
):
    settings.OUTBOX_RETRY_BACKOFF_SECONDS = 5
    settings.OUTBOX_RETRY_BACKOFF_MAX_SECONDS = 30
    settings.OUTBOX_MAX_ATTEMPTS = 6
    email = outbox_email_create(key="k:4", to="a@example.com", subject="s", body="b")
    delays = []
    for _ in range(5):
        before = timezone.now()
        delivery = outbox_email_deliver(email_id=email.pk)
        assert delivery.status == "retry"
        delays.append(delivery.retry_in)
        email.refresh_from_db()
        assert email.state == State.PENDING
        assert "ConnectionRefusedError" in email.last_error
        assert email.next_attempt_at >= before + timedelta(seconds=delivery.retry_in or 0)
        # Not due yet: a relay that comes early sends nothing.
        assert outbox_email_deliver(email_id=email.pk).status == "skipped"
        make_due(email)
    assert delays == [5, 10, 20, 30, 30]
    assert outbox_email_deliver(email_id=email.pk).status == "failed"
    email.refresh_from_db()
    assert email.state == State.FAILED
    assert email.attempts == 6
    assert "ConnectionRefusedError" in email.last_error


def test_a_sweep_stops_at_the_first_send_error(broker_down, smtp_down):
    for n in range(3):
        outbox_email_create(key=f"k:5{n}", to="a@example.com", subject="s", body="b")
    counts = outbox_sweep(budget_seconds=5)
    assert counts["due"] == 3
    assert counts["sent"] == 0
    # One attempt made; the others were not hammered against a dead server.
    assert sorted(OutboxEmail.objects.values_list("attempts", flat=True)) == [0, 0, 1]


def test_an_abandoned_claim_is_retried_only_if_nothing_reached_the_server(broker_down):
    long_ago = timezone.now() - timedelta(hours=1)
    before_smtp = outbox_email_create(key="k:6", to="a@example.com", subject="s", body="b")
    during_smtp = outbox_email_create(key="k:7", to="b@example.com", subject="s", body="b")
    OutboxEmail.objects.filter(pk=before_smtp.pk).update(state=State.SENDING, claimed_at=long_ago)
    OutboxEmail.objects.filter(pk=during_smtp.pk).update(
        state=State.SENDING, claimed_at=long_ago, handed_off_at=long_ago
    )
    # A fresh claim belongs to a live relay: left alone.
    live = outbox_email_create(key="k:8", to="c@example.com", subject="s", body="b")
    OutboxEmail.objects.filter(pk=live.pk).update(state=State.SENDING, claimed_at=timezone.now())

    assert outbox_claims_release() == (1, 1)
    before_smtp.refresh_from_db()
    during_smtp.refresh_from_db()
    live.refresh_from_db()
    assert before_smtp.state == State.PENDING
    assert during_smtp.state == State.FAILED
    assert "outcome unknown" in during_smtp.last_error
    assert live.state == State.SENDING

    outbox_sweep(budget_seconds=5)
    assert [m.to for m in mail.outbox] == [["a@example.com"]]


@pytest.mark.parametrize("recipient", ["<script>alert(1)</script>@example.com", "a@b@example.com"])
def test_an_address_no_mail_library_accepts_fails_at_once_with_nothing_sent(
    broker_down, smtp_down, recipient
):
    """A recipient the SMTP backend would refuse mid-exchange (ValueError, not an SMTP error):
    failed at once, never left "sending" (where "Send again" cannot reach it and the sweeper
    would call it "outcome unknown"), and no SMTP connection is tried."""
    email = outbox_email_create(key="k:bad", to=recipient, subject="s", body="b")
    assert outbox_email_deliver(email_id=email.pk).status == "failed"
    email.refresh_from_db()
    assert email.state == State.FAILED
    assert email.handed_off_at is None
    assert email.last_error.startswith("undeliverable, nothing sent:")
    assert outbox_claims_release() == (0, 0)
