"""The ASGI application `make bench` serves: Django's own (config.asgi), plus two framework-free
endpoints under /bench/raw/ that set the ceilings Django is compared with:

- /bench/raw/hello: a constant JSON body; the most a worker can answer at all.
- /bench/raw/fanout: the same three upstream calls as /bench/fanout/async, through the same
  shared aiohttp session, with no framework around them.

Every other path goes to Django unchanged (one prefix test per request). Lifespan events are
acknowledged here, since Django's handler rejects them.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

# config.asgi sets Django up (bench_settings: the bench image names it) before the views are
# imported.
from config.asgi import application as django_application  # isort: skip
from bench_endpoints.views import TIMEOUT_SECONDS, answer, upstream_urls
from shop.upstream import fetch_json

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

HELLO = b'{"hello": "world"}'


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def serving(django: Callable[[Scope, Receive, Send], Awaitable[None]]) -> Callable[..., Any]:
    """The bench application around one Django ASGI handler (bench_endpoints.asgi_variants
    serves the handlers it is compared with)."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and path == "/bench/raw/hello":
            await _respond(send, 200, HELLO)
            return
        if scope["type"] == "http" and path == "/bench/raw/fanout":
            calls = (fetch_json(url, timeout=TIMEOUT_SECONDS) for url in upstream_urls())
            body, status = answer(list(await asyncio.gather(*calls)))
            await _respond(send, status, json.dumps(body).encode())
            return
        await django(scope, receive, send)

    return application


application = serving(django_application)
