"""core.middleware's diagnostics and probes, with what a Gunicorn web worker adds: its memory
(runtime.metrics), the memory guard's request count, and /metrics summed over every worker.
settings.MIDDLEWARE installs these in place of core's classes, in the same positions.
"""

from django.http import HttpRequest, HttpResponse

from core import middleware
from core.metrics import render
from runtime import config, memory_guard, metrics


class RequestDiagnosticsMiddleware(middleware.RequestDiagnosticsMiddleware):
    """core's per-request diagnostics, then the worker's memory and the memory guard."""

    def _finish(
        self, request: HttpRequest, response: HttpResponse, request_id: str, seconds: float
    ) -> None:
        super()._finish(request, response, request_id, seconds)
        if worker_request_finished():
            response["Connection"] = "close"


def worker_request_finished() -> bool:
    """The worker's part of every request's end, answered by Django or before it (runtime.edge):
    its memory, the memory guard's count. True while the worker drains before it is replaced:
    the response closes its connection, no more requests on it."""
    metrics.refresh_worker_memory()
    return memory_guard.request_finished()


class HealthCheckMiddleware(middleware.HealthCheckMiddleware):
    def metrics_response(self) -> HttpResponse:
        """Every worker's values, summed from their multiprocess files under Gunicorn."""
        body, content_type = render(config.multiproc_dir())
        return HttpResponse(body, content_type=content_type)
