"""Views for the diagnostics tests only (pytest.mark.urls): no dependency on the app's API."""

import logging
import time

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

log = logging.getLogger("tests.diagnostics")


def ok(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def logs(request: HttpRequest) -> JsonResponse:
    log.warning("a line from inside the view", extra={"answer": 42})
    return JsonResponse({"ok": True})


def slow(request: HttpRequest) -> JsonResponse:
    time.sleep(0.05)
    return JsonResponse({"ok": True})


def query(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    return JsonResponse({"one": one})


def cached(request: HttpRequest) -> JsonResponse:
    cache.set("diagnostics", "value", timeout=30)
    return JsonResponse({"hit": cache.get("diagnostics"), "miss": cache.get("never-set")})


def fails(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("boom")


urlpatterns = [
    path("ok", ok, name="diag-ok"),
    path("logs", logs, name="diag-logs"),
    path("slow", slow, name="diag-slow"),
    path("query", query, name="diag-query"),
    path("cached", cached, name="diag-cached"),
    path("fails", fails, name="diag-fails"),
]
