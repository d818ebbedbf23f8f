"""The request ID: one per HTTP request, on every log line it causes, here and in Celery.

Nginx keeps the client's X-Request-ID or mints one and forwards it; a request that reached
Gunicorn directly (probes, other services on the backend network) gets one minted here. It lives
in a contextvar, so it follows the request into the thread that runs a sync view, into every log
line (core.logging adds it) and into the headers of any Celery task enqueued meanwhile, where
the worker binds it again for the task's own log lines.
"""

import uuid
from contextvars import ContextVar
from time import perf_counter
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# When the first layer that saw the request (runtime.edge) began with it, by perf_counter().
STARTED: ContextVar[float | None] = ContextVar("request_started", default=None)
# The Celery message header that carries it (protocol 2 headers become task.request attributes).
TASK_HEADER = "request_id"
# Longer or non-printable IDs from a client are replaced, not trusted into logs and headers.
# Nginx's $req_id map (nginx/nginx.conf) applies the same rule first.
MAX_LENGTH = 200


def request_id_from(header: str | None) -> str:
    """The incoming X-Request-ID if usable, otherwise a new one (32 hex digits, like Nginx's)."""
    if header and len(header) <= MAX_LENGTH and header.isascii() and header.isprintable():
        return header
    return uuid.uuid4().hex


def bind(request_id: str) -> None:
    """For the rest of this request. It stays bound until the response is closed, so Django's
    own 4xx/5xx line, logged after the middleware has returned, still has it."""
    REQUEST_ID.set(request_id)


def mark_started(at: float) -> None:
    """The request began at `at` (perf_counter()), before Django saw it: its duration counts
    from there."""
    STARTED.set(at)


def begin(header: str | None) -> tuple[str, float]:
    """The request's ID, bound for the rest of the request, and when it began (perf_counter()):
    those of the layer before Django (runtime.edge) if it began with the request, so that
    Django's answer keeps the ID that layer's log lines carry; else the incoming X-Request-ID
    (`header`, or a new one), from now."""
    start = STARTED.get()
    request_id = (REQUEST_ID.get() if start is not None else None) or request_id_from(header)
    bind(request_id)
    return request_id, perf_counter() if start is None else start


def on_request_finished(**kwargs: Any) -> None:
    """request_finished, once the server has closed the response: under WSGI the thread serves
    the next request in this same context. (Under ASGI every request runs in a task of its own,
    whose context ends with it.)"""
    REQUEST_ID.set(None)
    STARTED.set(None)


def add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current request ID, when there is one."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


# --- Celery: from the request that enqueues a task to the worker that runs it ---------------


def on_before_task_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish, in the process that enqueues: carry the request ID in the headers."""
    request_id = REQUEST_ID.get()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def on_task_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """task_prerun, in the worker: bind the enqueuing request's ID for the task's log lines."""
    request = getattr(task, "request", None)
    request_id = getattr(request, TASK_HEADER, None)
    if request_id is None:
        # Eager (apply) calls keep custom headers apart, under request.headers.
        request_id = (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    REQUEST_ID.set(request_id if isinstance(request_id, str) else None)
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


def on_task_postrun(**kwargs: Any) -> None:
    """task_postrun: the next task in this worker process must not inherit this one's IDs."""
    REQUEST_ID.set(None)
    structlog.contextvars.unbind_contextvars("task_id", "task_name")
