"""Misbehaving views; bounded, so a stray call cannot take a host down."""

import asyncio
import os
import socket
import time

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core import write_deadline

MIB = 1024 * 1024
# Memory this worker has "leaked": kept for the life of the process, which the memory guard ends.
_leaked: list[bytearray] = []


def _seconds(request: HttpRequest, default: float, most: float) -> float:
    try:
        value = float(request.GET.get("seconds", default))
    except ValueError:
        value = default
    return min(max(value, 0.0), most)


@csrf_exempt
async def slow(request: HttpRequest) -> JsonResponse:
    """A legitimate slow request (GET or POST): awaits, so the worker serves others meanwhile."""
    seconds = _seconds(request, 3, 20)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return JsonResponse({"slept": round(time.monotonic() - started, 3), "method": request.method})


async def hang(request: HttpRequest) -> JsonResponse:
    """A blocking call inside an async view: the event loop stops, and with it the worker's
    heartbeat, so Gunicorn's arbiter kills the worker after GUNICORN_TIMEOUT."""
    time.sleep(_seconds(request, 60, 120))  # blocking on purpose
    return JsonResponse({"hung": True})


def hang_sync(request: HttpRequest) -> JsonResponse:
    """A sync view stuck in a blocking call: the event loop (and the heartbeat) carry on, only
    the request's thread is stuck; the worker's watchdog (runtime/asgi.py) acts on
    GUNICORN_TIMEOUT."""
    time.sleep(_seconds(request, 60, 120))  # blocking on purpose
    return JsonResponse({"hung": True})


def _name(request: HttpRequest) -> str:
    return request.GET.get("name", "")[:100] or "fault-writer"


@csrf_exempt
def write_late(request: HttpRequest) -> JsonResponse:
    """Creates a user in a transaction it holds open (blocking) until the watchdog has answered
    the client 504, or `seconds`, then commits: back at once, before the worker the watchdog
    drains can end, the worst moment for a commit."""
    deadline = write_deadline.DEADLINE.get()
    stop = time.monotonic() + _seconds(request, 60, 60)
    with transaction.atomic():
        get_user_model().objects.create(username=_name(request))
        while not (deadline and deadline.answered) and time.monotonic() < stop:
            time.sleep(0.02)  # blocking on purpose
    return JsonResponse({"written": True})


@csrf_exempt
async def write_after(request: HttpRequest) -> JsonResponse:
    """Awaits `seconds`, then creates a user: an async view that writes only once its request is
    past its deadline. Nothing stops it there: no thread is stuck for the watchdog to see."""
    await asyncio.sleep(_seconds(request, 11, 60))
    await sync_to_async(get_user_model().objects.create)(username=_name(request))
    return JsonResponse({"written": True})


def block(request: HttpRequest) -> JsonResponse:
    """A sync view reading a socket without a timeout from a peer that never writes: like an
    upstream call made with no timeout. Bounded by the worker: it is replaced, and the thread
    with it, once the watchdog has seen it stuck."""
    ours, theirs = socket.socketpair()
    try:
        ours.recv(1)  # blocking on purpose: nothing is ever sent
    finally:
        ours.close()
        theirs.close()
    return JsonResponse({"read": True})


def query(request: HttpRequest) -> JsonResponse:
    """A query on the primary that runs `seconds` (pg_sleep), as the app's role through PgBouncer:
    past the role's statement_timeout Postgres cancels it, and the error is answered as JSON."""
    seconds = _seconds(request, 1, 30)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return JsonResponse({"slept": seconds})


@csrf_exempt
def leak(request: HttpRequest) -> JsonResponse:
    """Keeps `mb` MB (touched, so resident) for the life of the worker, and names the worker's
    pid (the memory measurement's test matches it with the measured worker)."""
    try:
        mb = min(max(int(request.GET.get("mb", 10)), 1), 64)
    except ValueError:
        mb = 10
    _leaked.append(bytearray(b"x" * (mb * MIB)))
    return JsonResponse({"leaked_mb": mb * len(_leaked), "pid": os.getpid()})
