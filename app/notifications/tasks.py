"""The outbox relay and its sweeper, on the "email" queue. Thin: the guards are in services."""

from typing import Any

from celery import shared_task
from django.conf import settings

from notifications import services
from notifications.relay import NOOP_TIMEOUT


@shared_task(
    name="notifications.send_email",
    # The outcome lives in the database; no result to store, no result backend to reach.
    ignore_result=True,
    bind=True,
    # Safe to run twice (the claim lets one run send): a worker lost mid-task puts the message
    # back on the queue instead of dropping it.
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.EMAIL_SOFT_TIME_LIMIT,
    time_limit=settings.EMAIL_TIME_LIMIT,
    # The row counts attempts and marks itself failed (OUTBOX_MAX_ATTEMPTS), not Celery.
    max_retries=None,
)
def outbox_email_send(self: Any, *, email_id: int) -> str:
    delivery = services.outbox_email_deliver(email_id=email_id)
    if delivery.retry_in is not None:
        # Exponential backoff with a cap, computed from the row's attempts. Should this retry
        # message be lost, the sweeper sends the row when it is due.
        raise self.retry(countdown=delivery.retry_in)
    return delivery.status


@shared_task(
    name="notifications.sweep_outbox",
    # The outcome lives in the database; no result to store, no result backend to reach.
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.EMAIL_SOFT_TIME_LIMIT,
    time_limit=settings.EMAIL_TIME_LIMIT,
)
def outbox_sweep() -> dict[str, int]:
    # New sends start only while one more still ends inside the soft time limit: at worst the
    # kept connection's NOOP, a new connection and the exchange (relay.py).
    budget = max(settings.EMAIL_SOFT_TIME_LIMIT - 2 * settings.EMAIL_TIMEOUT - NOOP_TIMEOUT, 1)
    return services.outbox_sweep(budget_seconds=budget)
