"""Which run holds a report: the claim, the heartbeat, and every write conditional on holding it.

A run first claims the report, in a row-locked transaction: a queued report, or a running one
whose heartbeat is older than REPORT_STALE_SECONDS (its worker is gone). The claim numbers the
run (`attempts`), and each later write of the run (progress and heartbeat, done, failed,
released) is an UPDATE conditional on state running and that number (report_held): a run that
lost its claim changes nothing and stops.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.db import DATABASE_ERRORS
from core.db_router import PRIMARY
from core.orm import one_or_none
from reports.models import Report

log = logging.getLogger(__name__)
State = Report.State


class ClaimLost(Exception):
    """This run no longer holds the report: another run claimed it, or the sweeper ended it."""


@dataclass(frozen=True)
class RunResult:
    status: Literal["done", "failed", "skipped", "superseded", "busy", "retry"]
    # Seconds after which the task should look again (status "busy" or "retry").
    retry_in: float | None = None


def report_stale_before() -> datetime:
    """A running report whose heartbeat is older than this has lost its worker."""
    return timezone.now() - timedelta(seconds=settings.REPORT_STALE_SECONDS)


def report_claim(*, report_id: int) -> tuple[Report, int] | RunResult:
    """Takes the report for a new run: (the report, the run's number), or why not."""
    now = timezone.now()
    with transaction.atomic(using=PRIMARY):
        report = one_or_none(Report.objects.using(PRIMARY).select_for_update().filter(pk=report_id))
        if report is None or report.state in (State.DONE, State.FAILED):
            return RunResult("skipped")
        if (
            report.state == State.RUNNING
            and report.heartbeat_at
            and report.heartbeat_at >= (report_stale_before())
        ):
            # Another run holds it and is alive: look again once it could have gone stale, so
            # this message is not dropped while that run might still die.
            return RunResult("busy", retry_in=settings.REPORT_STALE_SECONDS)
        if report.attempts >= settings.REPORT_MAX_ATTEMPTS:
            _finish_failed(report, report_gave_up_reason(attempts=report.attempts))
            return RunResult("failed")
        report.state = State.RUNNING
        report.attempts += 1
        report.progress = 0
        report.error = ""
        report.started_at = report.heartbeat_at = now
        report.save(
            update_fields=["state", "attempts", "progress", "error", "started_at", "heartbeat_at"]
        )
        return report, report.attempts


def report_gave_up_reason(*, attempts: int) -> str:
    return (
        f"The report was started {attempts} times and never finished (the worker running it "
        "stopped each time). Please try again later, or with a shorter date range."
    )


def _finish_failed(report: Report, reason: str) -> None:
    report.state = State.FAILED
    report.error = reason
    report.finished_at = timezone.now()
    report.save(update_fields=["state", "error", "finished_at"])


def report_held(*, report_id: int, attempt: int) -> QuerySet[Report]:
    """The report, only while this run holds it: every write of a run goes through this."""
    return Report.objects.using(PRIMARY).filter(pk=report_id, state=State.RUNNING, attempts=attempt)


def report_run_fail(*, report_id: int, attempt: int, reason: str) -> bool:
    """Ends the run failed with a reason the customer reads; False if it held the report no
    longer."""
    return bool(
        report_held(report_id=report_id, attempt=attempt).update(
            state=State.FAILED, error=reason, finished_at=timezone.now()
        )
    )


def report_run_release(*, report_id: int, attempt: int) -> None:
    """Back to queued, for a later run. Should the database be gone too, it goes stale instead
    (the sweeper re-queues it)."""
    try:
        report_held(report_id=report_id, attempt=attempt).update(state=State.QUEUED)
    except DATABASE_ERRORS:
        log.warning("report %s: not released; it goes stale instead", report_id, exc_info=True)


class ReportHeartbeat:
    """Writes progress, which is also the run's heartbeat; raises ClaimLost if the run lost it."""

    # At most one write per this many seconds unless the percentage moved.
    EVERY = 2.0

    def __init__(self, *, report_id: int, attempt: int, total: int) -> None:
        self.report_id, self.attempt, self.total = report_id, attempt, max(total, 1)
        self.percent = 0
        self.written_at = time.monotonic()

    def __call__(self, processed: int) -> None:
        # 100 only once the report is done: orders placed meanwhile may outnumber the count.
        percent = min(processed * 100 // self.total, 99)
        if percent == self.percent and time.monotonic() - self.written_at < self.EVERY:
            return
        updated = report_held(report_id=self.report_id, attempt=self.attempt).update(
            progress=percent, heartbeat_at=timezone.now()
        )
        if not updated:
            raise ClaimLost
        self.percent, self.written_at = percent, time.monotonic()
