"""The Celery app: configured from Django settings (CELERY_*), tasks discovered per app."""

import logging.config
import os
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from celery.beat import PersistentScheduler

from core import request_context, tracing
from notifications.relay import relay_close
from runtime import celery_metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("djstack")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(loglevel: int | None = None, **kwargs: Any) -> None:
    """Worker and beat log through Django's LOGGING (JSON on stdout), not Celery's own format.

    Connected, this receiver replaces Celery's logging setup altogether; the --loglevel of the
    entrypoint (CELERY_LOG_LEVEL) still sets the level.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


# The request ID of the HTTP request that enqueued a task is on the task's log lines.
signals.before_task_publish.connect(request_context.on_before_task_publish, weak=False)
signals.task_prerun.connect(request_context.on_task_prerun, weak=False)
signals.task_postrun.connect(request_context.on_task_postrun, weak=False)


# Tracing (core/tracing.py), when OTEL_EXPORTER_OTLP_ENDPOINT is set: started in each pool
# process, after the fork, so every process exports through a thread of its own.
@signals.worker_process_init.connect
def start_tracing(**kwargs: Any) -> None:
    tracing.setup(component="worker")


# A pool process ends with os._exit (no atexit): its last spans are exported first.
@signals.worker_process_shutdown.connect
def flush_tracing(**kwargs: Any) -> None:
    tracing.flush()


# ...and its SMTP connection, kept open from one email to the next, is closed with QUIT.
@signals.worker_process_shutdown.connect
def close_smtp(**kwargs: Any) -> None:
    relay_close()


def close_stale_connections(**kwargs: Any) -> None:
    """Around every task, as Django does around every request: drop database connections that
    are past CONN_MAX_AGE or broken (a PgBouncer restart), so no task starts on a dead one."""
    from django.db import close_old_connections

    close_old_connections()


signals.task_prerun.connect(close_stale_connections, weak=False)
signals.task_postrun.connect(close_stale_connections, weak=False)
# The worker's resident memory for Prometheus (runtime/celery_metrics.py, CELERY_METRICS_PORT).
signals.worker_ready.connect(celery_metrics.start, weak=False)


class HeartbeatFile(bootsteps.StartStopStep):
    """Touches a file on the worker's own timer, for a liveness check that skips the broker."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        from django.conf import settings

        path = Path(settings.CELERY_HEARTBEAT_FILE)
        path.touch()
        self.tref = parent.timer.call_repeatedly(settings.CELERY_HEARTBEAT_INTERVAL, path.touch)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()


app.steps["worker"].add(HeartbeatFile)


class HeartbeatScheduler(PersistentScheduler):
    """Beat's scheduler, touching the same heartbeat file on every tick of its loop."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        from django.conf import settings

        Path(settings.CELERY_HEARTBEAT_FILE).touch()
        interval: float = super().tick(*args, **kwargs)
        return interval
