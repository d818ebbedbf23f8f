"""One run of a report: claim it, build its CSV, complete it. Safe to call any number of times.

The CSV (services.aggregation) goes to a temporary file, fsynced, then renamed into place
(core.files) under a name carrying the run number; only the run that marks the report done has
its file recorded, and the customer's email is written to the outbox in that same transaction.
"""

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.db import DATABASE_ERRORS
from core.db_router import PRIMARY
from core.files import file_leftovers_remove, file_write_atomic
from core.orm import one_or_none
from reports import selectors
from reports.errors import ReportInvalid
from reports.models import Report
from reports.notifications import report_ready_email_create
from reports.selectors import OrderLines
from reports.services.aggregation import Totals, report_csv_write
from reports.services.claim import (
    ClaimLost,
    ReportHeartbeat,
    RunResult,
    report_claim,
    report_held,
    report_run_fail,
    report_run_release,
)
from reports.services.request import report_parameters_check

log = logging.getLogger(__name__)
State = Report.State


def report_directory(*, report_id: int) -> Path:
    """The report's own directory on the media volume: its CSV and whatever a dead run left."""
    return Path(settings.MEDIA_ROOT) / "reports" / str(report_id)


def _customer_id(report: Report) -> int | None:
    """Whose orders the report reads: None for every customer's (a staff report)."""
    return None if report.shop_wide else report.owner_id


def _orders(report: Report, heartbeat: ReportHeartbeat) -> Iterator[OrderLines]:
    """The report's orders, oldest first, a chunk at a time: after each chunk the run beats (and
    stops with ClaimLost if it lost the report) and pauses, if told to."""
    processed = 0
    for chunk in selectors.report_order_chunks(
        date_from=report.date_from,
        date_to=report.date_to,
        product_id=report.product_id,
        customer_id=_customer_id(report),
        chunk_size=settings.REPORT_CHUNK_SIZE,
    ):
        yield from chunk
        processed += len(chunk)
        heartbeat(processed)
        if settings.REPORT_CHUNK_PAUSE_SECONDS > 0:
            time.sleep(settings.REPORT_CHUNK_PAUSE_SECONDS)


def _build(report: Report, attempt: int) -> tuple[Totals, str]:
    """Writes the CSV under a temporary name, then renames it into place. Returns the totals
    and the file's path relative to MEDIA_ROOT."""
    report_parameters_check(date_from=report.date_from, date_to=report.date_to)
    directory = report_directory(report_id=report.pk)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    # What earlier runs of this report left half written: they are gone (this run holds it).
    file_leftovers_remove(directory=directory)
    name = f"report-{report.pk}-{attempt}.csv"
    total = selectors.report_order_count(
        date_from=report.date_from,
        date_to=report.date_to,
        product_id=report.product_id,
        customer_id=_customer_id(report),
    )
    heartbeat = ReportHeartbeat(report_id=report.pk, attempt=attempt, total=total)
    totals = file_write_atomic(
        path=directory / name,
        write=lambda out: report_csv_write(out=out, orders=_orders(report, heartbeat)),
        # Nginx (another user) reads it through the shared volume.
        mode=0o644,
    )
    return totals, f"reports/{report.pk}/{name}"


def report_complete(*, report_id: int, attempt: int, totals: Totals, path: str) -> bool:
    """Marks the report done with its file and totals, if this run still holds it."""
    with transaction.atomic(using=PRIMARY):
        report = one_or_none(
            report_held(report_id=report_id, attempt=attempt)
            .select_for_update()
            .select_related("owner")
        )
        if report is None:
            return False
        report.state = State.DONE
        report.progress = 100
        report.file = path
        report.order_count = totals.orders
        report.units = totals.units
        report.revenue = totals.revenue
        report.finished_at = report.heartbeat_at = timezone.now()
        report.save(
            update_fields=[
                "state",
                "progress",
                "file",
                "order_count",
                "units",
                "revenue",
                "finished_at",
                "heartbeat_at",
            ]
        )
        # The outbox row commits with "done", or neither does: one email per report.
        report_ready_email_create(report=report)
    return True


def report_run(*, report_id: int) -> RunResult:
    """One run of a report: claim, build, complete. Safe to call any number of times."""
    try:
        claim = report_claim(report_id=report_id)
    except DATABASE_ERRORS:
        # Nothing was claimed (a lock held past lock_timeout, PgBouncer or the primary gone): the
        # report is still queued, and this message must not end here, or only the sweeper's
        # visibility-timeout pass would ever run it.
        log.warning("report %s: could not be claimed; retrying", report_id, exc_info=True)
        return RunResult("retry", retry_in=settings.REPORT_STALE_SECONDS)
    if isinstance(claim, RunResult):
        return claim
    report, attempt = claim
    log.info("report %s: run %s started", report_id, attempt)
    # Every failure, in building or in completing, ends this run with its reason: an exception
    # escaping here would leave the report running for the sweeper to re-run, to the same end.
    path: str | None = None
    try:
        totals, path = _build(report, attempt)
        completed = report_complete(report_id=report_id, attempt=attempt, totals=totals, path=path)
    except ClaimLost:
        log.warning("report %s: run %s lost its claim; stopping", report_id, attempt)
        return RunResult("superseded")
    except SoftTimeLimitExceeded:
        _discard(path)
        report_run_fail(
            report_id=report_id,
            attempt=attempt,
            reason=f"The report took longer than {settings.REPORT_SOFT_TIME_LIMIT} seconds and was "
            "stopped. Please ask for a shorter date range.",
        )
        return RunResult("failed")
    except ReportInvalid as exc:
        report_run_fail(report_id=report_id, attempt=attempt, reason=exc.message)
        return RunResult("failed")
    except DATABASE_ERRORS:
        # PgBouncer or both databases unreachable: a later run may well succeed.
        log.warning(
            "report %s: run %s lost the database; retrying", report_id, attempt, exc_info=True
        )
        _discard(path)
        report_run_release(report_id=report_id, attempt=attempt)
        return RunResult("retry", retry_in=settings.REPORT_STALE_SECONDS)
    except Exception as exc:
        log.exception("report %s: run %s failed", report_id, attempt)
        _discard(path)
        report_run_fail(
            report_id=report_id,
            attempt=attempt,
            reason=f"The report could not be generated because of an internal error "
            f"({type(exc).__name__}). Please try again; if it fails again, contact support "
            f"quoting report {report_id}.",
        )
        return RunResult("failed")
    if not completed:
        # Another run holds the report now; its own file is the one that counts.
        _discard(path)
        return RunResult("superseded")
    log.info("report %s: run %s done, %s orders", report_id, attempt, totals.orders)
    return RunResult("done")


def _discard(path: str | None) -> None:
    """Removes a CSV this run wrote but never recorded on the report."""
    if path is not None:
        (Path(settings.MEDIA_ROOT) / path).unlink(missing_ok=True)
