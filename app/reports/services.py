"""Writes for reports: asking for one, and the run the reports worker makes of it.

Exactly once, however often the task is delivered. The task is acks_late and
reject_on_worker_lost, so a worker that dies mid-report puts the message back; the sweeper also
re-queues reports whose worker went silent. Every run first claims the report, in a row-locked
transaction: a queued report, or a running one whose heartbeat is older than
REPORT_STALE_SECONDS (its worker is gone). The claim numbers the run (`attempts`), and each later
write of the run (progress and heartbeat, done, failed) is an UPDATE conditional on state
running and that number: a run that lost its claim changes nothing and stops. The CSV goes to a
temporary file, fsynced, then renamed (atomic on one filesystem) to a name carrying the run
number; only the run that marks the report done has its file recorded, and the customer's email
is written to the outbox in that same transaction. One report, one file, one email, totals
counted once.
"""

import csv
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Literal, TextIO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import User
from config.db_router import PRIMARY
from core.db import DATABASE_ERRORS
from reports import selectors
from reports.errors import ReportForbidden, ReportInvalid, ReportLimitReached
from reports.models import Report
from reports.notifications import report_ready_email_create
from shop.models import Product

log = logging.getLogger(__name__)
State = Report.State
# A report created this recently may still be waiting for its on-commit enqueue.
ENQUEUE_GRACE = timedelta(seconds=5)
CSV_HEADER = ["date", "product_id", "product_name", "orders", "units", "revenue"]


class ClaimLost(Exception):
    """This run no longer holds the report: another run claimed it, or the sweeper ended it."""


@dataclass(frozen=True)
class RunResult:
    status: Literal["done", "failed", "skipped", "superseded", "busy", "retry"]
    # Seconds after which the task should look again (status "busy" or "retry").
    retry_in: float | None = None


@dataclass
class _Cell:
    """One CSV line in the making: a product on a day."""

    name: str
    orders: int = 0
    units: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0"))


@dataclass
class Totals:
    orders: int = 0
    units: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0"))


def report_parameters_check(*, date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise ReportInvalid("The date range ends before it starts.", field="date_to")
    if (date_to - date_from).days + 1 > settings.REPORT_MAX_DAYS:
        raise ReportInvalid(
            f"The date range may span at most {settings.REPORT_MAX_DAYS} days.", field="date_to"
        )


def report_create(
    *,
    owner: User,
    date_from: date,
    date_to: date,
    product_id: int | None = None,
    shop_wide: bool | None = None,
) -> Report:
    """Stores the request and enqueues its task on the "reports" queue after the commit.

    Shop-wide sales are staff's business: a customer's report covers their own orders only
    (shop_wide None: shop-wide for staff, their own for anyone else).
    """
    if shop_wide is None:
        shop_wide = owner.is_staff
    if shop_wide and not owner.is_staff:
        raise ReportForbidden(
            'Only staff may ask for a shop-wide report; ask for your own orders (scope "own").',
            field="scope",
        )
    report_parameters_check(date_from=date_from, date_to=date_to)
    if product_id is not None and not Product.objects.using(PRIMARY).filter(pk=product_id).exists():
        raise ReportInvalid(f"No product {product_id}.", field="product_id")
    with transaction.atomic(using=PRIMARY):
        _active_reports_check(owner=owner)
        report = Report.objects.using(PRIMARY).create(
            owner=owner,
            date_from=date_from,
            date_to=date_to,
            product_id=product_id,
            shop_wide=shop_wide,
        )
        transaction.on_commit(partial(report_enqueue, report_id=report.pk), using=PRIMARY)
    return report


def _active_reports_check(*, owner: User) -> None:
    """Raises ReportLimitReached when the owner already has REPORT_MAX_ACTIVE_PER_OWNER reports
    queued or running. Call inside the transaction that creates the report."""
    # The owner's row, locked until the commit, serializes their requests: without it, two at
    # the cap minus one would each count the other's report as not there yet and both pass.
    # NO KEY UPDATE: rows that reference the user (orders, tokens) are still written meanwhile;
    # only other writes of that row wait, for one short transaction.
    list(
        User.objects.using(PRIMARY)
        .select_for_update(no_key=True)
        .filter(pk=owner.pk)
        .values_list("pk", flat=True)
    )
    limit = settings.REPORT_MAX_ACTIVE_PER_OWNER
    active = (
        Report.objects.using(PRIMARY)
        .filter(owner=owner, state__in=[State.QUEUED, State.RUNNING])
        .count()
    )
    if active >= limit:
        raise ReportLimitReached(
            f"At most {limit} reports of yours may be queued or running at once, and {active} "
            "are: ask again once one of them has finished."
        )


def report_enqueue(*, report_id: int) -> bool:
    """Hands the report's task to the broker. A broker outage is logged, never raised: the
    report stays queued without enqueued_at, and the sweeper enqueues it later."""
    from reports.tasks import report_generate  # the tasks module imports this one

    try:
        report_generate.apply_async(kwargs={"report_id": report_id}, retry=False)
    except Exception:
        log.warning(
            "report %s not enqueued (broker unavailable); the sweeper will enqueue it",
            report_id,
            exc_info=True,
        )
        return False
    Report.objects.using(PRIMARY).filter(pk=report_id).update(enqueued_at=timezone.now())
    return True


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.REPORT_STALE_SECONDS)


def _claim(report_id: int) -> tuple[Report, int] | RunResult:
    now = timezone.now()
    with transaction.atomic(using=PRIMARY):
        report = Report.objects.using(PRIMARY).select_for_update().filter(pk=report_id).first()
        if report is None or report.state in (State.DONE, State.FAILED):
            return RunResult("skipped")
        if (
            report.state == State.RUNNING
            and report.heartbeat_at
            and report.heartbeat_at >= (_stale_before())
        ):
            # Another run holds it and is alive: look again once it could have gone stale, so
            # this message is not dropped while that run might still die.
            return RunResult("busy", retry_in=settings.REPORT_STALE_SECONDS)
        if report.attempts >= settings.REPORT_MAX_ATTEMPTS:
            _finish_failed(report, _gave_up_reason(report.attempts))
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


def _gave_up_reason(attempts: int) -> str:
    return (
        f"The report was started {attempts} times and never finished (the worker running it "
        "stopped each time). Please try again later, or with a shorter date range."
    )


def _finish_failed(report: Report, reason: str) -> None:
    report.state = State.FAILED
    report.error = reason
    report.finished_at = timezone.now()
    report.save(update_fields=["state", "error", "finished_at"])


def _held(report_id: int, attempt: int) -> QuerySet[Report]:
    """The report, only while this run holds it: every write of a run goes through this."""
    return Report.objects.using(PRIMARY).filter(pk=report_id, state=State.RUNNING, attempts=attempt)


def _fail(report_id: int, attempt: int, reason: str) -> bool:
    return bool(
        _held(report_id, attempt).update(
            state=State.FAILED, error=reason, finished_at=timezone.now()
        )
    )


class _Heartbeat:
    """Writes progress, which is also the run's heartbeat; raises ClaimLost if the run lost it."""

    # At most one write per this many seconds unless the percentage moved.
    EVERY = 2.0

    def __init__(self, report_id: int, attempt: int, total: int) -> None:
        self.report_id, self.attempt, self.total = report_id, attempt, max(total, 1)
        self.percent = 0
        self.written_at = time.monotonic()

    def __call__(self, processed: int) -> None:
        # 100 only once the report is done: orders placed meanwhile may outnumber the count.
        percent = min(processed * 100 // self.total, 99)
        if percent == self.percent and time.monotonic() - self.written_at < self.EVERY:
            return
        updated = _held(self.report_id, self.attempt).update(
            progress=percent, heartbeat_at=timezone.now()
        )
        if not updated:
            raise ClaimLost
        self.percent, self.written_at = percent, time.monotonic()


def _write_csv(out: TextIO, report: Report, heartbeat: _Heartbeat) -> Totals:
    """Per day and product: orders, units, revenue; then a total line.

    Orders arrive oldest first, so a day is complete when the next one starts: only that day's
    products are held in memory, besides the one chunk being read.
    """
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    totals = Totals()
    day: date | None = None
    products: dict[int, _Cell] = {}  # the current day's, by product id

    def flush() -> None:
        for pid in sorted(products):
            cell = products[pid]
            writer.writerow([day, pid, cell.name, cell.orders, cell.units, f"{cell.revenue:.2f}"])
        products.clear()

    processed = 0
    for chunk in selectors.report_order_chunks(
        date_from=report.date_from,
        date_to=report.date_to,
        product_id=report.product_id,
        customer_id=_customer_id(report),
        chunk_size=settings.REPORT_CHUNK_SIZE,
    ):
        for order in chunk:
            if not order.lines:
                continue
            order_day = order.created_at.date()
            if order_day != day:
                flush()
                day = order_day
            totals.orders += 1
            seen: set[int] = set()
            for line in order.lines:
                amount = line.quantity * line.unit_price
                cell = products.get(line.product_id)
                if cell is None:
                    cell = products[line.product_id] = _Cell(line.product_name)
                if line.product_id not in seen:  # an order counts once per product
                    seen.add(line.product_id)
                    cell.orders += 1
                cell.units += line.quantity
                cell.revenue += amount
                totals.units += line.quantity
                totals.revenue += amount
        processed += len(chunk)
        heartbeat(processed)
        if settings.REPORT_CHUNK_PAUSE_SECONDS > 0:
            time.sleep(settings.REPORT_CHUNK_PAUSE_SECONDS)
    flush()
    writer.writerow(["total", "", "", totals.orders, totals.units, f"{totals.revenue:.2f}"])
    return totals


def _customer_id(report: Report) -> int | None:
    """Whose orders the report reads: None for every customer's (a staff report)."""
    return None if report.shop_wide else report.owner_id


def _report_dir(report_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "reports" / str(report_id)


def _build(report: Report, attempt: int) -> tuple[Totals, str]:
    """Writes the CSV under a temporary name, then renames it into place. Returns the totals
    and the file's path relative to MEDIA_ROOT."""
    report_parameters_check(date_from=report.date_from, date_to=report.date_to)
    directory = _report_dir(report.pk)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    # What earlier runs of this report left half written: they are gone (this run holds it).
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    name = f"report-{report.pk}-{attempt}.csv"
    temporary = directory / f".{name}.tmp"
    total = selectors.report_order_count(
        date_from=report.date_from,
        date_to=report.date_to,
        product_id=report.product_id,
        customer_id=_customer_id(report),
    )
    heartbeat = _Heartbeat(report.pk, attempt, total)
    with temporary.open("w", newline="", encoding="utf-8") as out:
        totals = _write_csv(out, report, heartbeat)
        out.flush()
        os.fsync(out.fileno())
    # Nginx (another user) reads it through the shared volume.
    temporary.chmod(0o644)
    os.replace(temporary, directory / name)
    # The rename itself survives a crash only once the directory is synced too.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return totals, f"reports/{report.pk}/{name}"


def _complete(report_id: int, attempt: int, totals: Totals, path: str) -> bool:
    with transaction.atomic(using=PRIMARY):
        report = _held(report_id, attempt).select_for_update().select_related("owner").first()
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
    claim = _claim(report_id)
    if isinstance(claim, RunResult):
        return claim
    report, attempt = claim
    log.info("report %s: run %s started", report_id, attempt)
    # Every failure, in building or in completing, ends this run with its reason: an exception
    # escaping here would leave the report running for the sweeper to re-run, to the same end.
    path: str | None = None
    try:
        totals, path = _build(report, attempt)
        completed = _complete(report_id, attempt, totals, path)
    except ClaimLost:
        log.warning("report %s: run %s lost its claim; stopping", report_id, attempt)
        return RunResult("superseded")
    except SoftTimeLimitExceeded:
        _discard(path)
        _fail(
            report_id,
            attempt,
            f"The report took longer than {settings.REPORT_SOFT_TIME_LIMIT} seconds and was "
            "stopped. Please ask for a shorter date range.",
        )
        return RunResult("failed")
    except ReportInvalid as exc:
        _fail(report_id, attempt, exc.message)
        return RunResult("failed")
    except DATABASE_ERRORS:
        # PgBouncer or both databases unreachable: a later run may well succeed.
        log.warning(
            "report %s: run %s lost the database; retrying", report_id, attempt, exc_info=True
        )
        _discard(path)
        _release(report_id, attempt)
        return RunResult("retry", retry_in=settings.REPORT_STALE_SECONDS)
    except Exception as exc:
        log.exception("report %s: run %s failed", report_id, attempt)
        _discard(path)
        _fail(
            report_id,
            attempt,
            f"The report could not be generated because of an internal error "
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


def _release(report_id: int, attempt: int) -> None:
    try:
        _held(report_id, attempt).update(state=State.QUEUED)
    except DATABASE_ERRORS:
        log.warning("report %s: not released; it goes stale instead", report_id, exc_info=True)


def report_sweep() -> dict[str, int]:
    """Nothing stays queued or running forever (beat, every REPORT_SWEEP_SECONDS).

    - queued and never handed to the broker (it was down at commit), or handed over so long ago
      that the message must be lost (past the visibility timeout): enqueue it;
    - running with a heartbeat older than REPORT_STALE_SECONDS (its worker died, or its child was
      killed at the hard time limit): enqueue it again, once per silent run, and the next run
      claims it; after REPORT_MAX_ATTEMPTS runs, failed with a reason;
    - running and still beating past the hard time limit (cannot happen while the limit kills
      the run; if it does, the report must not run forever): failed, and the run, holding it no
      longer, stops at its next heartbeat.
    """
    now = timezone.now()
    lost = now - timedelta(seconds=settings.CELERY_VISIBILITY_TIMEOUT)
    counts = {"enqueued": 0, "requeued": 0, "failed": 0}
    reports = Report.objects.using(PRIMARY)
    never_sent = reports.filter(state=State.QUEUED).filter(
        Q(enqueued_at__isnull=True, created_at__lt=now - ENQUEUE_GRACE) | Q(enqueued_at__lt=lost)
    )
    for report_id in never_sent.values_list("pk", flat=True)[:500]:
        counts["enqueued"] += report_enqueue(report_id=report_id)

    for report in reports.filter(state=State.RUNNING, heartbeat_at__lt=_stale_before())[:500]:
        if report.attempts >= settings.REPORT_MAX_ATTEMPTS:
            counts["failed"] += _fail(report.pk, report.attempts, _gave_up_reason(report.attempts))
        elif report.enqueued_at is None or report.enqueued_at < max(
            report.heartbeat_at or now, lost
        ):
            # Not re-queued since this run last beat (or that message must be lost too).
            log.warning("report %s: run %s went silent; re-queued", report.pk, report.attempts)
            counts["requeued"] += report_enqueue(report_id=report.pk)

    too_long = now - timedelta(seconds=settings.REPORT_TIME_LIMIT + settings.REPORT_STALE_SECONDS)
    still_beating = reports.filter(heartbeat_at__gte=_stale_before())
    for report in still_beating.filter(state=State.RUNNING, started_at__lt=too_long)[:500]:
        reason = f"The report ran longer than its {settings.REPORT_TIME_LIMIT}-second limit."
        counts["failed"] += _fail(report.pk, report.attempts, reason)
    return counts


def report_files_expire() -> dict[str, int]:
    """Deletes the CSVs of reports that finished over REPORT_RETENTION_DAYS ago (beat, hourly,
    on the reports worker: the one that mounts the media volume). The row stays, with
    expired_at set: its status still reads, its download answers 410.

    The row is updated first, conditional on the file it records: from that commit on no
    download hands Nginx the path, and a download already being sent keeps reading the open file
    (Linux frees it on close). A file left behind by a failed deletion is logged, never retried.
    """
    days = settings.REPORT_RETENTION_DAYS
    if days <= 0:
        return {"expired": 0}
    now = timezone.now()
    reports = Report.objects.using(PRIMARY)
    due = reports.filter(state=State.DONE, finished_at__lt=now - timedelta(days=days)).exclude(
        file=""
    )
    expired = 0
    for report_id, path in due.order_by("finished_at").values_list("pk", "file")[:1000]:
        if not reports.filter(pk=report_id, state=State.DONE, file=path).update(
            file="", expired_at=now
        ):
            continue
        expired += 1
        try:
            # The report's own directory: its CSV and anything a dead run left there.
            shutil.rmtree(_report_dir(report_id))
        except FileNotFoundError:
            pass
        except OSError:
            log.warning(
                "report %s: its expired file %s not deleted", report_id, path, exc_info=True
            )
    if expired:
        log.info("%s report files past %s days deleted", expired, days)
    return {"expired": expired}
