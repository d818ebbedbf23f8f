"""One JSON object per log line on stdout, so the log pipeline never has to parse prose.

One formatter for everything: stdlib loggers (Django, Gunicorn, Uvicorn, Celery, ours) and
structlog loggers go through structlog's ProcessorFormatter. Every line has timestamp, level,
logger, message and pid, the request ID when one is bound (core.request_context), and any
`extra=` fields of the call. With tracing on (core/tracing.py), lines written inside a span
also have its trace_id and span_id, so a trace and its log lines find each other.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from core.request_context import add_request_id


def _timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    created = record.created if record is not None else datetime.now(UTC).timestamp()
    event_dict["timestamp"] = datetime.fromtimestamp(created, UTC).isoformat(
        timespec="milliseconds"
    )
    return event_dict


def _pid(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Which Gunicorn worker or Celery pool process wrote the line.
    record = event_dict.get("_record")
    event_dict["pid"] = record.process if record is not None else os.getpid()
    return event_dict


# Set by core.tracing.setup() when tracing is on: (trace_id, span_id) of the current span, or
# None. Left None, no line pays more than this one attribute check.
trace_ids: Callable[[], tuple[str, str] | None] | None = None


def _trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if trace_ids is not None and (ids := trace_ids()) is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


# Set by core.write_deadline: whether the request this line belongs to was already answered 504 by
# the watchdog while its thread still runs. Such a line carries client_status 504 next to what
# it says of the request (Django's "Internal Server Error" for the status its thread came back
# with later), so nobody reading it takes that status for the client's.
answered: Callable[[], bool] | None = None


def _client_status(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if answered is not None and answered():
        event_dict.setdefault("client_status", 504)
    return event_dict


def _leading_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # timestamp, level, logger, message first: the line reads well before any tool parses it.
    head: EventDict = {key: event_dict.pop(key) for key in _LEADING if key in event_dict}
    head.update(event_dict)
    return head


_LEADING = ("timestamp", "level", "logger", "message", "request_id", "trace_id")

# Run for structlog's own loggers when they log, and for stdlib records when they are formatted.
SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    add_request_id,
    _trace_ids,
    _client_status,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _timestamp,
]


def configure_structlog() -> None:
    """structlog.get_logger() loggers hand their events to stdlib logging, i.e. to JsonFormatter."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """The formatter LOGGING (Django, Celery) and runtime.gunicorn_logging (Gunicorn) install."""

    def __init__(self) -> None:
        configure_structlog()
        super().__init__(
            foreign_pre_chain=[*SHARED_PROCESSORS, structlog.stdlib.ExtraAdder()],
            processors=[
                _pid,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.EventRenamer("message"),
                _leading_keys,
                # Values json cannot encode (a request object passed as `extra`) become their repr.
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )


class ThrottledWarning:
    """A warning logged at most once every `every` seconds, with its traceback, then with how
    many it stood for: a dependency down under load is one line per interval, not one per
    request, and the lines that explain an outage are not rotated away by its repetitions."""

    def __init__(self, logger: logging.Logger, *, every: float = 10.0) -> None:
        self._logger = logger
        self._every = every
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *, exc_info: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self._every
        if held:
            message += f" ({held} more since the last such line, not logged)"
        self._logger.warning(message, exc_info=exc_info)
