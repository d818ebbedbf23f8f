"""Views for the ASGI handler tests only (pytest.mark.urls)."""

import asyncio
import threading

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

# Set by a test to let the held requests finish.
RELEASE = asyncio.Event()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(pid)


async def threads(request: HttpRequest) -> JsonResponse:
    first = await sync_to_async(threading.get_ident)()
    pid = await sync_to_async(_backend_pid)()
    second = await sync_to_async(threading.get_ident)()
    return JsonResponse({"threads": [first, second], "backend_pid": pid})


async def hold(request: HttpRequest) -> JsonResponse:
    thread = await sync_to_async(threading.get_ident)()
    await RELEASE.wait()
    return JsonResponse({"threads": [thread]})


async def pid(request: HttpRequest) -> JsonResponse:
    # Its first call on the request's thread is a query.
    return JsonResponse({"backend_pid": await sync_to_async(_backend_pid)()})


# What /write's sync call appended: a test reads it to see whether the call ran.
WRITES: list[int] = []


@csrf_exempt
async def write(request: HttpRequest) -> JsonResponse:
    await sync_to_async(WRITES.append)(1)
    return JsonResponse({"written": len(WRITES)})


# The names /called/<name> ran its sync call for, in the order they ran.
CALLED: list[str] = []


@csrf_exempt
async def called(request: HttpRequest, name: str) -> JsonResponse:
    await sync_to_async(CALLED.append)(name)
    return JsonResponse({"called": name})


async def nothing(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"threads": []})


async def wait(request: HttpRequest) -> JsonResponse:
    await RELEASE.wait()  # never set by the test that uses it: the client goes away first
    return JsonResponse({})


urlpatterns = [
    path("threads", threads),
    path("hold", hold),
    path("pid", pid),
    path("nothing", nothing),
    path("write", write),
    path("wait", wait),
    path("called/<str:name>", called),
]
