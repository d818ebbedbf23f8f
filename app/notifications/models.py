from django.db import models
from django.utils import timezone


class OutboxEmail(models.Model):
    """An email to send, written in the same transaction as the event it tells about.

    pending -> sending -> sent; a failed attempt goes back to pending with a later
    next_attempt_at, the last one to failed. See notifications.services for the guards.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    # One email per event ("order-confirmation:42"): writing it twice keeps the first.
    key = models.CharField(max_length=100, unique=True)
    recipient = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    # The Message-ID header: lets the relay's log and the recipient's side match one message.
    message_id = models.CharField(max_length=255)

    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set when a relay claims it (state sending)...
    claimed_at = models.DateTimeField(null=True, blank=True)
    # ...and when that relay starts the SMTP transaction. A relay that died after this point
    # may or may not have handed the message over: it is never sent again (failed, unknown).
    handed_off_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The sweeper's scans: only rows still to send or in flight.
            models.Index(
                fields=["state", "next_attempt_at"],
                condition=models.Q(state__in=["pending", "sending"]),
                name="outbox_unsent_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} to {self.recipient} ({self.state})"
