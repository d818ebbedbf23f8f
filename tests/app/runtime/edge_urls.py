"""A cached route for the edge tests only (pytest.mark.urls): the view answers what the edge's
hit would, from PAGES."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from runtime import edge

PAGES: dict[int, bytes] = {}
# Set by a test: the view's answer sets a cookie.
COOKIE: dict[str, str] = {}
# Set by a test: the view answers 401 without an Authorization header.
REQUIRE_AUTH: list[bool] = []
# What the view got from edge.handed(), request by request.
HANDED: list[object] = []


def page(request: HttpRequest) -> HttpResponse:
    HANDED.append(edge.handed())
    if REQUIRE_AUTH and "HTTP_AUTHORIZATION" not in request.META:
        return HttpResponse(b'{"error": "unauthorized"}', status=401)
    response = HttpResponse(
        PAGES.get(int(request.GET.get("n", "1")), b"{}"), content_type="application/json"
    )
    for name, value in COOKIE.items():
        response.set_cookie(name, value)
    return response


urlpatterns = [path("page", page, name="edge-page")]
