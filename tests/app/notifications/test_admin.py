"""The outbox's "send again" admin action, on the real test Postgres, with the test Redis as
the Celery broker: the email goes back to pending through the service and its relay task is
queued after the commit; nothing is sent in the request."""

import json

import pytest
from django.core import mail
from django.utils import timezone

from notifications.models import OutboxEmail
from tests.app.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)
State = OutboxEmail.State
CHANGELIST = "/admin/notifications/outboxemail/"


def outbox_row(state: str, **fields) -> OutboxEmail:
    return OutboxEmail.objects.create(
        key=f"order-confirmation:{state}",
        recipient="ada@example.com",
        subject="Your order",
        body="b",
        message_id="<first@example.com>",
        state=state,
        attempts=5,
        **fields,
    )


def queued_ids(broker) -> list[str]:
    return [json.loads(raw)["headers"]["kwargsrepr"] for raw in broker.lrange("email", 0, -1)]


def send_again(client, *emails: OutboxEmail):
    return client.post(
        CHANGELIST,
        {"action": "send_again", "_selected_action": [email.pk for email in emails]},
        follow=True,
    )


def test_send_again_puts_failed_and_sent_emails_back_to_pending_and_enqueues_them(
    superuser_client, celery_broker
):
    failed = outbox_row(State.FAILED, last_error="outcome unknown")
    sent = outbox_row(State.SENT, sent_at=timezone.now())
    response = send_again(superuser_client, failed, sent)
    assert response.status_code == 200
    assert "2 email(s) queued to send again." in response.content.decode()
    for email in (failed, sent):
        email.refresh_from_db()
        assert email.state == State.PENDING
        assert email.attempts == 0
        assert email.next_attempt_at <= timezone.now()
        assert email.sent_at is None
        assert email.last_error == ""
        # A new message: the recipient's side drops one whose Message-ID it has seen.
        assert email.message_id != "<first@example.com>"
    assert sorted(queued_ids(celery_broker)) == sorted(
        f"{{'email_id': {email.pk}}}" for email in (failed, sent)
    )
    assert mail.outbox == []  # queued for the relay, not sent in the request


def test_send_again_leaves_an_email_a_relay_is_sending_alone(superuser_client, celery_broker):
    sending = outbox_row(State.SENDING, claimed_at=timezone.now())
    response = send_again(superuser_client, sending)
    assert "1 email(s) left alone: a relay is sending them right now." in response.content.decode()
    sending.refresh_from_db()
    assert sending.state == State.SENDING
    assert sending.attempts == 5
    assert celery_broker.llen("email") == 0


def test_send_again_needs_the_change_permission(superuser_client, celery_broker):
    # A staff member who may only view the outbox is not offered the action.
    from django.contrib.auth.models import Permission

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_outboxemail"))
    client = superuser_client  # its page setup, logged in as the viewer instead
    client.force_login(viewer)
    failed = outbox_row(State.FAILED)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "send_again" not in page.content.decode()
    send_again(client, failed)
    failed.refresh_from_db()
    assert failed.state == State.FAILED
    assert celery_broker.llen("email") == 0
