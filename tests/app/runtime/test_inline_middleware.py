"""runtime.inline_middleware through the pooled ASGI handler: Django's middleware answers exactly as
with its own thread hops (sessions, messages, CSRF, redirects, host validation, headers), while
a plain GET hands the request's thread only Django's two signal jobs instead of one per
middleware method."""

import asyncio
from concurrent.futures import Future
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.utils.functional import SimpleLazyObject, empty
from django.utils.module_loading import import_string

from runtime import inline_middleware
from runtime.asgi import PooledExecutorASGIHandler, RequestExecutor
from tests.app.runtime import inline_urls
from tests.app.runtime.asgi_scope import answer, scope

pytestmark = [pytest.mark.urls("tests.app.runtime.inline_urls")]


class Hops(PooledExecutorASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # Django's own chain, not runtime.asgi's inline one: each sync method a thread hop.
        BaseHandler.load_middleware(self, is_async)


class CountingExecutor(RequestExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


async def request(
    app: ASGIHandler,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes = b"testserver",
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return await answer(app, scope(path, method=method, headers=headers, host=host), body)


def cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in headers:
        if name.lower() == b"set-cookie":
            jar.load(value.decode())
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(jar: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", "; ".join(f"{k}={v}" for k, v in jar.items()).encode())]


RANDOM_HEADERS = (b"set-cookie", b"x-request-id", b"x-request-duration")


def shape(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[Any, ...]:
    """What must not differ between the two chains: status, headers (only the names of those
    whose values are random or timed) and body, minus the random CSRF token."""
    kept = sorted(
        (name.lower(), b"" if name.lower() in RANDOM_HEADERS else value) for name, value in headers
    )
    names = sorted(cookies(headers))
    return status, kept, names, body if b"token" not in body else b"<token>"


async def transcript(app: ASGIHandler) -> list[tuple[Any, ...]]:
    steps = [await request(app, "/hello")]
    steps.append(await request(app, "/slash"))  # APPEND_SLASH
    steps.append(await request(app, "/hello", host=b"evil.example"))  # DisallowedHost
    got = await request(app, "/form")
    steps.append(got)
    jar = cookies(got[1])
    form = (b"content-type", b"application/x-www-form-urlencoded")
    steps.append(await request(app, "/form", method="POST", body=b"field=1", headers=[form]))
    token = [(b"x-csrftoken", jar["csrftoken"].encode())]
    steps.append(
        await request(
            app, "/form", method="POST", body=b"field=1",
            headers=[form, *cookie_header(jar), *token],
        )
    )  # fmt: skip
    written = await request(app, "/session/write")
    steps.append(written)
    # A request that never touches the message waiting in its cookie leaves it there.
    steps.append(await request(app, "/hello", headers=cookie_header(cookies(written[1]))))
    steps.append(await request(app, "/session/read", headers=cookie_header(cookies(written[1]))))
    return [shape(*step) for step in steps]


@pytest.mark.django_db(transaction=True)
def test_the_inline_chain_answers_exactly_as_djangos_own():
    inline, hops = PooledExecutorASGIHandler(), Hops()
    try:
        got, expected = asyncio.run(transcript(inline)), asyncio.run(transcript(hops))
    finally:
        inline.executors.close()
        hops.executors.close()
    assert got == expected
    statuses = [step[0] for step in got]
    assert statuses == [200, 301, 400, 200, 403, 200, 200, 200, 200]
    # The session was saved (the save went to the request's thread: on the event loop Django
    # refuses database access) and read back with its message.
    assert got[-1][-1] == b'{"visits": 1, "messages": ["saved"]}'
    assert "sessionid" in got[-3][2]
    assert got[-2][2] == []  # the untouched message's cookie neither rewritten nor deleted


@pytest.mark.django_db(transaction=True)
def test_the_pooled_handler_answers_exactly_as_the_stock_one():
    """SERVER_RUNTIME=stock (Django's ASGIHandler as released) must be a way back that changes
    nothing a client sees: the same transcript, middleware and all."""
    pooled, stock = PooledExecutorASGIHandler(), ASGIHandler()
    try:
        got, expected = asyncio.run(transcript(pooled)), asyncio.run(transcript(stock))
    finally:
        pooled.executors.close()
    assert got == expected
    assert [step[0] for step in expected] == [200, 301, 400, 200, 403, 200, 200, 200, 200]


def sync_middleware_methods() -> int:
    """Thread hops Django's own chain makes for a GET: one per sync process_request and
    process_response of each MiddlewareMixin class in settings, plus CSRF's process_view."""
    hops = 0
    for path in settings.MIDDLEWARE:
        if path in inline_middleware.BY_DJANGO_PATH:
            cls = import_string(path)
            hops += sum(hasattr(cls, m) for m in ("process_request", "process_response"))
            hops += hasattr(cls, "process_view")
    return hops


async def jobs_for_one_get(app: PooledExecutorASGIHandler) -> int:
    executor = CountingExecutor()
    app.executors._idle.append(executor)
    app.executors.created += 1
    status, _, _ = await request(app, "/hello")
    assert status == 200
    return executor.jobs


def test_a_get_hands_its_thread_no_job_instead_of_one_per_middleware_method():
    inline, hops = PooledExecutorASGIHandler(), Hops()
    try:
        inline_jobs, hop_jobs = (
            asyncio.run(jobs_for_one_get(inline)),
            asyncio.run(jobs_for_one_get(hops)),
        )
    finally:
        inline.executors.close()
        hops.executors.close()
    # Inline, an async view's GET never needs its thread: request_started's receivers
    # (close_old_connections) would run there before a first call, request_finished's are left
    # nothing to do there. Django's chain hops once per sync method, and then closes the
    # response on the thread it used.
    assert inline_jobs == 0
    assert sync_middleware_methods() == 13  # the seven classes of settings.MIDDLEWARE
    assert hop_jobs == sync_middleware_methods() + 1


def test_a_request_that_never_uses_messages_builds_no_message_storage():
    """Building one (a cookie and a session storage, a signer) is wasted on every API request;
    a view that uses messages gets its storage all the same (the transcripts above)."""
    app = PooledExecutorASGIHandler()
    try:
        status, headers, _ = asyncio.run(request(app, "/kept"))
    finally:
        app.executors.close()
    assert status == 200
    assert not any(name.lower() == b"set-cookie" for name, _ in headers)  # as Django's own
    storage = inline_urls.KEPT[-1]  # never built: what the change is for
    assert isinstance(storage, SimpleLazyObject)
    assert storage._wrapped is empty


def test_every_django_middleware_in_settings_has_an_inline_twin():
    django_classes = [p for p in settings.MIDDLEWARE if p.startswith("django.")]
    assert sorted(django_classes) == sorted(inline_middleware.BY_DJANGO_PATH)
    for path, twin in inline_middleware.BY_DJANGO_PATH.items():
        assert issubclass(twin, import_string(path))
