"""The ASGI app for Gunicorn with /gc answering the worker's garbage collector state (its
thresholds, and how many young collections it has run), and /in-flight a request that holds a
few hundred objects while it waits 50 ms, as a view waiting on an upstream does; every other
path is Django's."""

import asyncio
import gc
import json
from typing import Any

from config.asgi import application as django_application


async def _answer(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope.get("path")
    if scope["type"] == "http" and path == "/gc":
        state = {"threshold": gc.get_threshold(), "young": gc.get_stats()[0]["collections"]}
        await _answer(send, json.dumps(state).encode())
    elif scope["type"] == "http" and path == "/in-flight":
        held = [{"n": [n]} for n in range(200)]
        await asyncio.sleep(0.05)
        await _answer(send, str(len(held)).encode())
    else:
        await django_application(scope, receive, send)
