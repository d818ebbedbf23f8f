"""Views for the inline middleware tests only (pytest.mark.urls): each exercises one middleware
path that may or may not reach the database or the request body."""

from django.contrib import messages
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import get_token
from django.urls import path


async def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "world"})


KEPT: list[object] = []


async def kept(request: HttpRequest) -> JsonResponse:
    """hello, keeping the request's message storage for the test to look at once it is
    answered (the request itself lets go of it at its end)."""
    KEPT.append(request._messages)  # type: ignore[attr-defined]
    return JsonResponse({"hello": "world"})


def session_write(request: HttpRequest) -> JsonResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    messages.info(request, "saved")
    return JsonResponse({"visits": request.session["visits"]})


def session_read(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "visits": request.session.get("visits"),
            "messages": [str(message) for message in messages.get_messages(request)],
        }
    )


def form(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        return JsonResponse({"posted": request.POST.get("field")})
    return JsonResponse({"token": get_token(request)})


urlpatterns = [
    path("hello", hello),
    path("kept", kept),
    path("slash/", hello),
    path("session/write", session_write),
    path("session/read", session_read),
    path("form", form),
]
