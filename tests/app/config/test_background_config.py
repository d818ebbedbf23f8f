"""The Celery and compose configuration that keeps background work: per-task guarantees and
limits, queues with their own workers, the sweeps on beat, the media volume."""

import re
import weakref

import pytest
import yaml
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.conf import settings
from django.db import connections

import notifications.tasks  # noqa: F401 - registers the tasks, as the worker's autodiscovery does
import reports.tasks  # noqa: F401  # demo-shop
from config.celery import app, close_stale_connections
from tests.support import ROOT

RERUNNABLE = {
    # task name: (queue, soft limit, hard limit)
    # demo-shop: begin
    "reports.generate": ("reports", 300, 330),
    "reports.sweep": ("default", None, None),
    # Deletes files: on the one worker that mounts the media volume.
    "reports.expire": ("reports", None, None),
    # demo-shop: end
    "notifications.send_email": ("email", 30, 60),
    "notifications.sweep_outbox": ("email", 30, 60),
}
SWEEPS = (
    "notifications.sweep_outbox",
    "reports.sweep",  # demo-shop
    "reports.expire",  # demo-shop
)
# Each worker service's queue, and the queue's hard time limit.
WORKER_QUEUES = {
    "worker": "default",
    "worker-reports": "reports",  # demo-shop
    "worker-email": "email",
}
HARD_LIMITS = {
    "default": 30,
    "reports": 330,  # demo-shop
    "email": 60,
}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match[1])


@pytest.mark.parametrize("name", RERUNNABLE)
def test_rerunnable_tasks_are_acked_late_and_requeued_when_their_worker_dies(name):
    task = app.tasks[name]
    queue, soft, hard = RERUNNABLE[name]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    # Their outcome lives in the database: no result backend on the publish path.
    assert task.ignore_result is True
    assert app.amqp.router.route({}, name)["queue"].name == queue
    if soft is not None:
        assert (task.soft_time_limit, task.time_limit) == (soft, hard)


def test_no_message_waits_unacked_past_the_visibility_timeout():
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    limits = [
        settings.CELERY_TASK_TIME_LIMIT,
        settings.REPORT_TIME_LIMIT,  # demo-shop
        settings.EMAIL_TIME_LIMIT,
    ]
    assert max(limits) < visibility
    assert visibility > settings.OUTBOX_RETRY_BACKOFF_MAX_SECONDS
    assert visibility > settings.REPORT_STALE_SECONDS  # demo-shop


def test_workers_take_one_message_at_a_time_and_recycle_their_children():
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_max_tasks_per_child > 0
    assert app.conf.worker_max_memory_per_child > 0
    assert app.conf.worker_soft_shutdown_timeout > 0
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit


def test_stale_database_connections_are_closed_around_every_task():
    for signal in (signals.task_prerun, signals.task_postrun):
        receivers = [
            r() if isinstance(r, weakref.ReferenceType) else r for _, r in signal.receivers
        ]
        assert close_stale_connections in receivers


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_database_connection_from_task_to_task():
    """Celery's Django fixup, as a worker runs it around each task, with this project's own
    receiver: the connection the first task opened serves the next ones (DB_CONN_MAX_AGE
    governs, as in web). The fixup alone closes it around every task."""
    fixup = DjangoWorkerFixup(app)
    task = app.tasks["notifications.send_email"]
    connection = connections["default"]
    connection.ensure_connection()
    opened = connection.connection
    for _ in range(3):
        for receiver in (fixup.on_task_prerun, close_stale_connections):
            receiver(sender=task)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        for receiver in (fixup.on_task_postrun, close_stale_connections):
            receiver(sender=task)
    assert connection.connection is opened


def test_beat_runs_every_sweep_and_drops_a_sweep_that_waited_too_long():
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    for task in SWEEPS:
        entry = schedule[task]
        assert entry["options"]["expires"] == entry["schedule"]


def test_each_queue_has_its_own_worker_service_and_exactly_one_beat():
    services = COMPOSE["services"]
    queues = {
        name: service["environment"]["CELERY_QUEUES"]
        for name, service in services.items()
        if service.get("command") == ["/opt/celery/entrypoint.sh", "worker"]
    }
    assert queues == WORKER_QUEUES
    beats = [
        s for s in services.values() if s.get("command") == ["/opt/celery/entrypoint.sh", "beat"]
    ]
    assert len(beats) == 1
    for name, queue in queues.items():
        hard = HARD_LIMITS[queue]
        # Warm shutdown: the running task finishes before Docker's SIGKILL.
        assert seconds(services[name]["stop_grace_period"]) > hard, name


# demo-shop: begin
def test_reports_are_written_by_their_worker_and_read_by_nginx_only():
    services = COMPOSE["services"]
    assert "media:/srv/media" in services["worker-reports"]["volumes"]
    assert "media:/srv/media:ro" in services["nginx"]["volumes"]
    for name, service in services.items():
        if name not in ("worker-reports", "nginx"):
            assert not any("media" in str(v) for v in service.get("volumes", [])), name
    assert "media" in COMPOSE["volumes"]


# demo-shop: end


def test_the_mail_catcher_is_reached_on_the_backend_network_only():
    catcher = COMPOSE["services"]["mailcatcher"]
    assert "ports" not in catcher
    assert catcher["networks"] == ["backend"]
