"""Nothing stays queued or running forever, and no file is kept past its retention: the beat
sweeps of reports."""

import logging
import shutil
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.db_router import PRIMARY
from reports.models import Report
from reports.services.claim import report_gave_up_reason, report_run_fail, report_stale_before
from reports.services.request import report_enqueue
from reports.services.run import report_directory

log = logging.getLogger(__name__)
State = Report.State
# A report created this recently may still be waiting for its on-commit enqueue.
ENQUEUE_GRACE = timedelta(seconds=5)


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

    for report in reports.filter(state=State.RUNNING, heartbeat_at__lt=report_stale_before())[:500]:
        if report.attempts >= settings.REPORT_MAX_ATTEMPTS:
            reason = report_gave_up_reason(attempts=report.attempts)
            counts["failed"] += report_run_fail(
                report_id=report.pk, attempt=report.attempts, reason=reason
            )
        elif report.enqueued_at is None or report.enqueued_at < max(
            report.heartbeat_at or now, lost
        ):
            # Not re-queued since this run last beat (or that message must be lost too).
            log.warning("report %s: run %s went silent; re-queued", report.pk, report.attempts)
            counts["requeued"] += report_enqueue(report_id=report.pk)

    too_long = now - timedelta(seconds=settings.REPORT_TIME_LIMIT + settings.REPORT_STALE_SECONDS)
    still_beating = reports.filter(heartbeat_at__gte=report_stale_before())
    for report in still_beating.filter(state=State.RUNNING, started_at__lt=too_long)[:500]:
        reason = f"The report ran longer than its {settings.REPORT_TIME_LIMIT}-second limit."
        counts["failed"] += report_run_fail(
            report_id=report.pk, attempt=report.attempts, reason=reason
        )
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
            shutil.rmtree(report_directory(report_id=report_id))
        except FileNotFoundError:
            pass
        except OSError:
            log.warning(
                "report %s: its expired file %s not deleted", report_id, path, exc_info=True
            )
    if expired:
        log.info("%s report files past %s days deleted", expired, days)
    return {"expired": expired}
