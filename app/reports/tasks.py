"""The report task and the retention sweep (queue "reports"), the sweeper (queue "default").
Thin: see services."""

from typing import Any

from celery import shared_task
from django.conf import settings

from reports import services


@shared_task(
    name="reports.generate",
    # The outcome lives in the database; no result to store, no result backend to reach.
    ignore_result=True,
    bind=True,
    # Safe to run twice (services: the claim and the state guard): acked only once it finished,
    # back on the queue when the worker dies mid-report.
    acks_late=True,
    reject_on_worker_lost=True,
    # k8s/base/workers/reports: grace 360s = hard limit 330 + 30.
    soft_time_limit=settings.REPORT_SOFT_TIME_LIMIT,
    time_limit=settings.REPORT_TIME_LIMIT,
    # Runs are counted on the report (REPORT_MAX_ATTEMPTS), not by Celery.
    max_retries=None,
)
def report_generate(self: Any, *, report_id: int) -> str:
    result = services.report_run(report_id=report_id)
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.status


@shared_task(name="reports.sweep", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def report_sweep() -> dict[str, int]:
    return services.report_sweep()


# Deletes files, so it runs where the media volume is mounted: routed to the reports queue.
@shared_task(name="reports.expire", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def report_files_expire() -> dict[str, int]:
    return services.report_files_expire()
