"""The pooled ASGI handler (runtime/asgi.py) keeps Django's thread rules and the database settings:
a request's sync calls share one thread, threads are reused across requests, and a connection
outlives its request only as DB_CONN_MAX_AGE says.

What every server must do runs under both handlers SERVER_RUNTIME picks from (`any_handler`):
Django's stock ASGIHandler is the way back. The reuse of threads and the pool's bound are the
pooled handler's own gains, so those tests run for it alone."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from runtime.asgi import ExecutorPool, PooledExecutorASGIHandler
from tests.app.runtime import asgi_urls
from tests.app.runtime.asgi_scope import scope

pytestmark = [pytest.mark.urls("tests.app.runtime.asgi_urls")]


class Request:
    def __init__(self, app: ASGIHandler, path: str) -> None:
        self.communicator = ApplicationCommunicator(app, scope(path))

    async def start(self) -> "Request":
        await self.communicator.send_input({"type": "http.request", "body": b""})
        return self

    async def response(self) -> dict[str, Any]:
        start = await self.communicator.receive_output(20)
        assert start["status"] == 200, start
        body = b""
        while True:
            message = await self.communicator.receive_output(20)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await self.communicator.wait(20)
        return dict(json.loads(body))


async def get(app: ASGIHandler, path: str) -> dict[str, Any]:
    return await (await Request(app, path).start()).response()


@pytest.fixture
def app() -> Iterator[PooledExecutorASGIHandler]:
    handler = PooledExecutorASGIHandler()
    yield handler
    handler.executors.close()


@pytest.fixture(params=["pooled", "stock"])
def any_handler(request: pytest.FixtureRequest) -> Iterator[ASGIHandler]:
    """Each handler SERVER_RUNTIME may pick (runtime/config.py)."""
    if request.param == "stock":
        yield ASGIHandler()
        return
    handler = PooledExecutorASGIHandler()
    yield handler
    handler.executors.close()


async def two_requests(app: ASGIHandler) -> list[dict[str, Any]]:
    return [await get(app, "/threads"), await get(app, "/threads")]


@pytest.mark.django_db(transaction=True)
def test_every_handler_runs_a_requests_sync_calls_on_one_thread_with_one_connection(
    any_handler, conn_max_age
):
    # Django's rule under ASGI (thread-sensitive sync code): a request keeps one thread, so one
    # database connection and its transactions. Answered as JSON by either handler.
    conn_max_age(0)
    first, second = asyncio.run(two_requests(any_handler))
    for answer in (first, second):
        assert answer["threads"][0] == answer["threads"][1]
        assert answer["backend_pid"] > 0
    # CONN_MAX_AGE=0: no connection outlives its request, whichever thread ran it.
    assert second["backend_pid"] != first["backend_pid"]


# pytest runs these synchronously: asyncio.run gives each its own event loop, as a worker has.
@pytest.mark.django_db(transaction=True)
def test_a_requests_sync_calls_share_one_thread_and_the_next_request_reuses_it(app, conn_max_age):
    # Pooled only: reusing the thread, and so its connection, is what the pooled handler is for.
    conn_max_age(60)
    first, second = asyncio.run(two_requests(app))
    assert first["threads"][0] == first["threads"][1]
    assert second["threads"] == first["threads"]
    # The thread's connection lived on into the next request (DB_CONN_MAX_AGE=60).
    assert second["backend_pid"] == first["backend_pid"]
    assert app.executors.created == 1


@pytest.mark.django_db(transaction=True)
def test_with_conn_max_age_zero_each_request_still_closes_its_connection(app, conn_max_age):
    # Pooled only: the same thread serves both (stock Django starts a thread per request).
    conn_max_age(0)
    first, second = asyncio.run(two_requests(app))
    assert second["threads"] == first["threads"]  # the same thread...
    assert second["backend_pid"] != first["backend_pid"]  # ...with a new connection


def test_concurrent_requests_get_their_own_threads_and_wait_when_all_are_lent(app):
    # Pooled only: the bound on threads per worker is the pool's (stock Django has none).
    asyncio.run(three_requests_on_two_threads(app))


async def three_requests_on_two_threads(app: PooledExecutorASGIHandler) -> None:
    asgi_urls.RELEASE = asyncio.Event()
    app.executors = ExecutorPool(2)
    held = [await Request(app, "/hold").start() for _ in range(2)]
    await asyncio.sleep(0.2)
    waiting = await Request(app, "/hold").start()
    await asyncio.sleep(0.2)
    assert app.executors.created == 2
    assert len(app.executors._waiters) == 1  # the third request waits for a thread

    asgi_urls.RELEASE.set()
    threads = [(await r.response())["threads"][0] for r in held]
    assert threads[0] != threads[1]
    # It got one of the two threads back, not a third.
    assert (await waiting.response())["threads"][0] in threads
    assert app.executors.created == 2
