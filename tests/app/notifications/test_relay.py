"""The relay's SMTP connection (notifications.relay), kept from one email to the next, against
the project's mail catcher: a real SMTP server that says which connection each message came
over (its peer)."""

import os
import signal
import socket

import pytest
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

import config.celery  # noqa: F401 - connects its worker_process_shutdown receivers
from notifications import relay
from notifications.models import OutboxEmail
from notifications.services import outbox_email_create, outbox_email_deliver, outbox_sweep

pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)
State = OutboxEmail.State


def emails(count: int, prefix: str) -> list[OutboxEmail]:
    return [
        outbox_email_create(
            key=f"{prefix}:{n}", to=f"{prefix}{n}@example.com", subject="s", body="b"
        )
        for n in range(count)
    ]


def test_emails_one_after_another_go_over_one_connection(broker_down, smtp_server):
    for email in emails(3, "one"):
        assert outbox_email_deliver(email_id=email.pk).status == "sent"
    received = smtp_server.messages()
    assert len(received) == 3
    assert len({message["peer"] for message in received}) == 1, received


def test_the_sweeper_sends_over_the_same_connection(broker_down, smtp_server):
    first = emails(3, "sweep")[0]
    assert outbox_email_deliver(email_id=first.pk).status == "sent"
    assert outbox_sweep(budget_seconds=5)["sent"] == 2
    assert len({message["peer"] for message in smtp_server.messages()}) == 1


def test_a_connection_that_stopped_answering_is_replaced_before_the_hand_off(
    broker_down, smtp_server
):
    """The kept connection dies between two emails (here its socket is shut: what a server's
    idle timeout or restart leaves): the NOOP finds it, a new one carries the next email at
    its first attempt, with no error recorded."""
    first, second = emails(2, "dropped")
    assert outbox_email_deliver(email_id=first.pk).status == "sent"
    held = relay.relay_connection()
    held.connection.sock.shutdown(socket.SHUT_RDWR)
    assert outbox_email_deliver(email_id=second.pk).status == "sent"
    second.refresh_from_db()
    assert (second.state, second.attempts, second.last_error) == (State.SENT, 1, "")
    received = smtp_server.messages()
    assert len({message["peer"] for message in received}) == 2, received


def test_after_a_send_error_the_next_email_opens_a_new_connection(broker_down, smtp_server):
    """The server refuses a recipient (the mail catcher refuses @refused.invalid): that email is
    retried later, and the connection the refusal happened on is not the next one's."""
    sent, refused, after = emails(3, "error")
    OutboxEmail.objects.filter(pk=refused.pk).update(recipient="someone@refused.invalid")
    assert outbox_email_deliver(email_id=sent.pk).status == "sent"
    assert outbox_email_deliver(email_id=refused.pk).status == "retry"
    refused.refresh_from_db()
    assert "SMTPRecipientsRefused" in refused.last_error
    assert outbox_email_deliver(email_id=after.pk).status == "sent"
    peers = [message["peer"] for message in smtp_server.messages()]
    assert len(peers) == 2
    assert peers[0] != peers[1]


def test_a_connection_idle_too_long_is_replaced_not_checked(broker_down, smtp_server, monkeypatch):
    first, second = emails(2, "idle")
    assert outbox_email_deliver(email_id=first.pk).status == "sent"
    monkeypatch.setattr(relay, "IDLE_SECONDS", 0.0)
    assert outbox_email_deliver(email_id=second.pk).status == "sent"
    assert len({message["peer"] for message in smtp_server.messages()}) == 2


def test_a_forked_child_never_uses_its_parents_connection(smtp_server):
    held = relay.relay_connection()
    child = os.fork()
    if child == 0:  # the child: exits at once, saying whether it inherited the connection
        os._exit(0 if relay._held is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert relay.relay_connection() is held


def test_a_pool_process_that_ends_says_quit_on_its_connection(broker_down, smtp_server):
    """Celery's worker_process_shutdown (config/celery.py): the server sees the kept connection
    end with QUIT, not dropped, and the process holds none after."""
    [email] = emails(1, "quit")
    assert outbox_email_deliver(email_id=email.pk).status == "sent"
    [message] = smtp_server.messages()
    assert smtp_server.quits() == []
    signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert smtp_server.quits() == [message["peer"]]
    assert relay._held is None


def test_an_exchange_interrupted_mid_send_is_never_trusted_again(broker_down, smtp_server):
    """A soft time limit fires inside smtplib while the server stalls on a recipient (the mail
    catcher answers @slow.invalid late; SIGALRM raises what Celery's signal raises): the
    connection, its state unknown, is dropped, and the next email goes over a new one at its
    first attempt."""
    stalled, after = emails(2, "stall")
    OutboxEmail.objects.filter(pk=stalled.pk).update(recipient="someone@slow.invalid")

    def time_limit(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, time_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(SoftTimeLimitExceeded):
            outbox_email_deliver(email_id=stalled.pk)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert relay._held is None
    assert outbox_email_deliver(email_id=after.pk).status == "sent"
    after.refresh_from_db()
    assert (after.state, after.attempts, after.last_error) == (State.SENT, 1, "")
    [message] = smtp_server.messages()
    assert message["rcpt_tos"] == [after.recipient]
