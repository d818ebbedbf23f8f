"""The project's ASGI app for Gunicorn, plus one test-only path, /preload-report, answering what
the serving worker inherited from a preloading master: its collector's frozen object count and
whether its URL resolver was already built."""

import gc
import json
from typing import Any

from django.urls import get_resolver

from config.asgi import application as project_application

# Read as this module loads, in the master, before config/preload.py runs: the report compares.
_populated_at_import = get_resolver()._populated


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] != "/preload-report":
        await project_application(scope, receive, send)
        return
    body = json.dumps(
        {
            "frozen": gc.get_freeze_count(),
            "resolver_built_at_import": _populated_at_import,
            "resolver_built": get_resolver()._populated,
        }
    ).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
