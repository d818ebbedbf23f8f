"""Publishing a task from a request, where the broker may be down."""

import logging
from typing import Any

from celery import Task

log = logging.getLogger(__name__)


def task_publish(*, task: "Task[Any, Any]", kwargs: dict[str, Any], what: str, later: str) -> bool:
    """One try, no publish retries: the request must not wait on a broker that is down. A
    refused publish is logged, never raised (the caller's row is the truth, and its sweeper
    publishes it later) and answers False."""
    try:
        task.apply_async(kwargs=kwargs, retry=False)
    except Exception:
        log.warning("%s not enqueued (broker unavailable); %s", what, later, exc_info=True)
        return False
    return True
