"""A cached route for the edge tests only (pytest.mark.urls): the view answers what the edge's
hit would, from PAGES."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

PAGES: dict[int, bytes] = {}
# Set by a test: the view's answer sets a cookie.
COOKIE: dict[str, str] = {}


def page(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        PAGES.get(int(request.GET.get("n", "1")), b"{}"), content_type="application/json"
    )
    for name, value in COOKIE.items():
        response.set_cookie(name, value)
    return response


urlpatterns = [path("page", page, name="edge-page")]
