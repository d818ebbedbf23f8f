"""Views outside the API that meet real database errors (pytest.mark.urls)."""

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path


def statement_timeout(request: HttpRequest) -> JsonResponse:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '50ms'")
        cursor.execute("SELECT pg_sleep(5)")
    return JsonResponse({"ok": True})


def unknown_table(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    return JsonResponse({"ok": True})


urlpatterns = [
    path("statement-timeout", statement_timeout),
    path("unknown-table", unknown_table),
]
