"""Probe and metrics endpoints, and the diagnostics every request gets.

HealthCheckMiddleware answers the probes and /metrics before host validation, sessions or any
view machinery: Kubernetes and Docker probe the pod or container address, which is no allowed
host, a liveness probe must not depend on anything but the process answering, and Prometheus
scrapes web:8000 directly (Nginx answers /metrics with a 404).

RequestDiagnosticsMiddleware, first of all: request ID, duration, slow-request log, metrics.
runtime.middleware's subclasses of the two, which settings install, add the web worker's part:
its memory, the memory guard's request count and every worker's metrics summed.
"""

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

from core import metrics, request_context, tracing, write_deadline
from core.db import DATABASE_ERRORS, database_error_response
from core.errors import ServerBusy, domain_error_response, error_response
from core.selectors import readiness_get

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"


def _liveness() -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _readiness() -> JsonResponse:
    """200 "ok"; 200 "degraded" while a dependency is down but one database answers (the
    primary, the replica or Redis down: reads still served, writes 503 without the primary),
    since taking every pod out would turn a partial outage into a full one; 503 "unavailable"
    when no database answers (both down, or PgBouncer unreachable)."""
    report = readiness_get(timeout=settings.READYZ_TIMEOUT)
    status = "ok" if report.ok else "degraded" if report.ready else "unavailable"
    body: dict[str, Any] = {"status": status, "checks": report.checks}
    if report.failed:
        body["failed"] = report.failed
    return JsonResponse(body, status=200 if report.ready else 503)


def _metrics(multiproc_dir: str | None = None) -> HttpResponse:
    body, content_type = metrics.render(multiproc_dir)
    return HttpResponse(body, content_type=content_type)


class _SyncAndAsyncMiddleware:
    """Runs in whichever mode the chain below it runs (no sync/async adapter on every request):
    __call__ serves sync chains and hands async ones to the coroutine _acall."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self._call(request)

    def _call(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError


class HealthCheckMiddleware(_SyncAndAsyncMiddleware):
    def metrics_response(self) -> HttpResponse:
        """This process's metrics (runtime.middleware's subclass sums Gunicorn's workers)."""
        return _metrics()

    def _call(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            return _liveness()
        if request.path == READINESS_PATH:
            return _readiness()
        if request.path == METRICS_PATH:
            return self.metrics_response()
        response: HttpResponse = self.get_response(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            return _liveness()
        if request.path == READINESS_PATH:
            # Blocking checks run off the event loop so other requests keep flowing.
            return await sync_to_async(_readiness, thread_sensitive=False)()
        if request.path == METRICS_PATH:
            # Reads every worker's metric files: off the event loop, like the checks above.
            return await sync_to_async(self.metrics_response, thread_sensitive=False)()
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response


class JsonErrorMiddleware(_SyncAndAsyncMiddleware):
    """The errors the API's own handlers (config/api.py) never see get its JSON shape too: a
    database error a view outside the API let through (the admin, for one) its JSON 503, not
    a 500; a method a route does not serve, which django-ninja and Django's views answer with
    an HTML 405, a JSON 405 that names the methods it does serve (Allow kept).

    HEAD, which HTTP requires wherever GET is served, is served as GET where django-ninja
    refused it (Django's own views serve it already): the route's GET runs again as GET, and
    the server (Uvicorn, Gunicorn) sends its headers without the body. A route's 405 names
    HEAD beside GET."""

    def _call(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if _head_refused(request, response):
            request.method = "GET"
            try:
                response = self.get_response(request)
            finally:
                request.method = "HEAD"  # the metrics and logs name what the client sent
        return _json_not_allowed(response)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        if _head_refused(request, response):
            request.method = "GET"
            try:
                response = await self.get_response(request)
            finally:
                request.method = "HEAD"
        return _json_not_allowed(response)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_ERRORS):
            log.warning("database error in %s", request.path, exc_info=exception)
            return database_error_response(exception)
        if isinstance(exception, ServerBusy):  # no request thread came free (runtime/asgi.py)
            return domain_error_response(exception)
        return None


def _allowed(response: HttpResponseNotAllowed) -> set[str]:
    methods = {m.strip() for m in response["Allow"].split(",") if m.strip()}
    return methods | {"HEAD"} if "GET" in methods else methods


def _head_refused(request: HttpRequest, response: HttpResponse) -> bool:
    return (
        request.method == "HEAD"
        and isinstance(response, HttpResponseNotAllowed)
        and "GET" in _allowed(response)
    )


def _json_not_allowed(response: HttpResponse) -> HttpResponse:
    if not isinstance(response, HttpResponseNotAllowed):
        return response
    # Built from a set: sorted, so the same route always names its methods alike.
    allowed = ", ".join(sorted(_allowed(response)))
    json = error_response(405, "method_not_allowed", f"This path serves only {allowed}.")
    json["Allow"] = allowed
    return json


class RouteSpanMiddleware(_SyncAndAsyncMiddleware):
    """Names the request's tracing span after its route. Not the URL's name: django-ninja gives
    one URL pattern to all the methods of a path, named after one of its operations. Installed
    first in MIDDLEWARE only when tracing is on (settings)."""

    def _call(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        tracing.name_span(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = await self.get_response(request)
        tracing.name_span(request)
        return response


slow_log = logging.getLogger("core.requests")
log = logging.getLogger(__name__)
request_finished.connect(
    request_context.on_request_finished, dispatch_uid="core.request_context.clear"
)
# Answered by HealthCheckMiddleware, so never resolved to a view: named for the metrics here.
_UNRESOLVED_VIEWS = {LIVENESS_PATH: "healthz", READINESS_PATH: "readyz", METRICS_PATH: "metrics"}


def _view_name(request: HttpRequest) -> str:
    match = request.resolver_match
    if match is not None:
        return match.view_name
    # Never the path itself: one metric series per distinct unknown URL would have no bound.
    return _UNRESOLVED_VIEWS.get(request.path, "unresolved")


class RequestDiagnosticsMiddleware(_SyncAndAsyncMiddleware):
    """Per request: X-Request-ID, X-Request-Duration, slow-request log, metrics.

    Kept to a contextvar set and reset, two clock reads, a few dict lookups and the metric
    increments: every request of the benchmark pays for it. The duration runs from this
    middleware (the first), or from runtime.edge when the request passed it first, until the
    response object comes back, so a streamed body's transfer is not in it; Nginx's access log
    has the full time.
    """

    def _call(self, request: HttpRequest) -> HttpResponse:
        # Bound until request_finished (below).
        request_id, start = request_context.begin(request.META.get("HTTP_X_REQUEST_ID"))
        response: HttpResponse = self.get_response(request)
        self._finish(request, response, request_id, perf_counter() - start)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id, start = request_context.begin(request.META.get("HTTP_X_REQUEST_ID"))
        response: HttpResponse = await self.get_response(request)
        self._finish(request, response, request_id, perf_counter() - start)
        return response

    def _finish(
        self, request: HttpRequest, response: HttpResponse, request_id: str, seconds: float
    ) -> None:
        response["X-Request-ID"] = request_id
        response["X-Request-Duration"] = f"{seconds:.6f}"
        request_observe(
            method=request.method or "",
            path=request.path,
            client=request.META.get("REMOTE_ADDR", ""),
            view=_view_name(request),
            status=_status_sent(response),
            seconds=seconds,
        )


def _status_sent(response: HttpResponse) -> int:
    """The status the client got: the watchdog's 504 if it answered first (runtime/asgi.py), not
    what the request's thread came back with later."""
    deadline = write_deadline.DEADLINE.get()
    return 504 if deadline is not None and deadline.answered else response.status_code


def request_observe(
    *, method: str, path: str, client: str, view: str, status: int, seconds: float
) -> None:
    """A request's metrics and, past the thresholds, its slow-request line: for every request,
    answered by Django (RequestDiagnosticsMiddleware) or before it (runtime.edge)."""
    metrics.observe_request(method, view, status, seconds)
    warning_seconds = settings.SLOW_REQUEST_WARNING_MS / 1000
    if seconds <= warning_seconds:
        return
    critical_seconds = settings.SLOW_REQUEST_CRITICAL_MS / 1000
    level = logging.CRITICAL if seconds > critical_seconds else logging.WARNING
    limit = critical_seconds if level == logging.CRITICAL else warning_seconds
    slow_log.log(
        level,
        "slow request: %s %s took %.0f ms (limit %.0f ms)",
        method,
        path,
        seconds * 1000,
        limit * 1000,
        extra={
            "method": method,
            "path": path,
            # The client's address as Nginx settled it (nginx.conf, X-Forwarded-For).
            "client": client,
            "view": view,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "threshold_ms": round(limit * 1000),
        },
    )
