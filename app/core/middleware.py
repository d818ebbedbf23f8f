"""Probe endpoints, answered before host validation, sessions or any view machinery.

Kubernetes and Docker probe the pod or container address, which is no allowed host, and a
liveness probe must not depend on anything but the process answering.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.selectors import readiness_get

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


def _liveness() -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _readiness() -> JsonResponse:
    report = readiness_get(timeout=settings.READYZ_TIMEOUT)
    failed = sorted(name for name, check in report.checks.items() if not check["ok"])
    body: dict[str, Any] = {"status": "ok" if report.ok else "unavailable", "checks": report.checks}
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=200 if report.ok else 503)


class HealthCheckMiddleware:
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
        if request.path == LIVENESS_PATH:
            return _liveness()
        if request.path == READINESS_PATH:
            return _readiness()
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            return _liveness()
        if request.path == READINESS_PATH:
            # Blocking checks run off the event loop so other requests keep flowing.
            return await sync_to_async(_readiness, thread_sensitive=False)()
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response
