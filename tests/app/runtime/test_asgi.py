"""The pooled ASGI handler (runtime/asgi.py) keeps Django's thread rules and the database settings:
a request's sync calls share one thread, threads are reused across requests, and a connection
outlives its request only as DB_CONN_MAX_AGE says.

What every server must do runs under both handlers SERVER_RUNTIME picks from (`any_handler`):
Django's stock ASGIHandler is the way back. The reuse of threads and the pool's bound are the
pooled handler's own gains, so those tests run for it alone."""

import asyncio
import gc
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.core.handlers.asgi import ASGIHandler

from core import write_deadline
from runtime import asgi
from runtime.asgi import ExecutorPool, Lease, PooledExecutorASGIHandler
from tests.app.runtime import asgi_urls
from tests.app.runtime.asgi_scope import answer, scope

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
    for each in (first, second):
        assert each["threads"][0] == each["threads"][1]
        assert each["backend_pid"] > 0
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


@pytest.mark.django_db(transaction=True)
def test_a_request_that_runs_nothing_on_its_thread_never_starts_it(app):
    # Django sends request_started and request_finished through the request's thread: two
    # thread hops for a view that never leaves the event loop. Here it never takes a thread.
    asyncio.run(get(app, "/nothing"))
    asyncio.run(get(app, "/nothing"))
    assert app.executors.created == 0
    asyncio.run(get(app, "/threads"))
    (executor,) = app.executors._idle
    assert len(executor._threads) == 1  # type: ignore[attr-defined]


@pytest.mark.django_db(transaction=True)
def test_request_started_still_closes_an_expired_connection_before_the_first_query(
    app, conn_max_age
):
    # request_started's receivers run on the request's thread just before its first call there:
    # a connection past DB_CONN_MAX_AGE is closed before the request can use it, as in Django.
    conn_max_age(1)
    first = asyncio.run(get(app, "/pid"))
    assert asyncio.run(get(app, "/pid")) == first  # within its age: kept
    time.sleep(1.2)
    asyncio.run(get(app, "/nothing"))  # never touches the thread, so never closes it...
    late = asyncio.run(get(app, "/pid"))  # ...the next request that does, does: first thing
    assert late["backend_pid"] != first["backend_pid"]
    assert len(app.executors._idle) == 1


@pytest.mark.django_db(transaction=True)
def test_a_failing_request_started_receiver_fails_every_call_of_the_request(app, monkeypatch):
    # As in Django, where the whole request fails: the view's later calls do not run as if
    # request_started had done its work.
    calls: list[str] = []

    def failing(**kwargs: Any) -> None:
        calls.append("receiver")
        raise RuntimeError("request_started failed")

    deferred = asgi._thread_local_receivers() | {failing}
    monkeypatch.setattr(asgi, "_thread_local_receivers", lambda: deferred)
    signals.request_started.connect(failing, weak=False, dispatch_uid="test.asgi.failing")
    try:
        communicator = ApplicationCommunicator(app, scope("/threads"))
        asyncio.run(failing_request(communicator))
    finally:
        signals.request_started.disconnect(dispatch_uid="test.asgi.failing")
    assert calls == ["receiver"]


async def failing_request(communicator: ApplicationCommunicator) -> None:
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(20)
    assert start["status"] == 500
    await communicator.wait(20)


def test_a_request_cancelled_by_its_client_ends_without_its_thread(app, monkeypatch):
    # The client goes away while an async view waits: Django cancels the view and sends
    # request_finished; here on the event loop, since nothing ran on the request's thread.
    finished: list[bool] = []

    def receiver(**kwargs: Any) -> None:
        finished.append(True)

    deferred = asgi._thread_local_receivers() | {receiver}
    monkeypatch.setattr(asgi, "_thread_local_receivers", lambda: deferred)
    signals.request_finished.connect(receiver, weak=False, dispatch_uid="test.asgi.finished")
    try:
        asyncio.run(disconnect_while_waiting(app))
    finally:
        signals.request_finished.disconnect(dispatch_uid="test.asgi.finished")
    assert finished == [True]
    assert app.executors.created == 0  # it never took a thread


async def disconnect_while_waiting(app: PooledExecutorASGIHandler) -> None:
    asgi_urls.RELEASE = asyncio.Event()
    communicator = ApplicationCommunicator(app, scope("/wait"))
    await communicator.send_input({"type": "http.request", "body": b""})
    await asyncio.sleep(0.2)
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(20)


def test_a_task_that_outlives_its_request_cannot_run_on_the_thread_lent_next():
    # A request cancelled while a task of its went on (a client gone, an answer of 504) gives its
    # thread back; the next request's request_started still runs first there, and the old
    # task's late call is refused rather than run on a thread that is no longer its request's.
    pool = ExecutorPool(1)
    stale = Lease(pool)
    try:
        thread = stale.submit(threading.get_ident).result(5)
        stale.end()
        ran: list[str] = []
        current = Lease(pool)
        current.first = lambda: ran.append("request_started")
        assert current.submit(threading.get_ident).result(5) == thread  # lent again
        with pytest.raises(RuntimeError, match="request has ended"):
            stale.submit(ran.append, "stale")
        assert ran == ["request_started"]
        assert current.closing() is True
        current.end()
        assert pool._idle
        assert pool.created == 1
    finally:
        pool.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signal", ["request_started", "request_finished"])
def test_a_receiver_that_is_not_thread_local_still_runs_on_the_requests_thread(app, signal):
    # A fork's own receiver may need the request's thread (a thread-local, the ORM): it keeps
    # Django's hop, even for a request whose view never leaves the event loop.
    ran_on: list[str] = []

    def receiver(**kwargs: Any) -> None:
        ran_on.append(threading.current_thread().name)

    getattr(signals, signal).connect(receiver, weak=False, dispatch_uid="test.asgi.receiver")
    try:
        asyncio.run(get(app, "/nothing"))
    finally:
        getattr(signals, signal).disconnect(dispatch_uid="test.asgi.receiver")
    assert len(ran_on) == 1
    assert ran_on[0].startswith("django-request")


def test_concurrent_requests_get_their_own_threads_and_wait_when_all_are_lent(app):
    # Pooled only: the bound on threads per worker is the pool's (stock Django has none).
    asyncio.run(three_requests_on_two_threads(app))


def request_thread_gauges(app: PooledExecutorASGIHandler) -> dict[str, float | None]:
    """The worker's request-thread gauges as a tick of its event loop leaves them."""
    from prometheus_client import REGISTRY

    app._tick(timeout=30)
    names = ("threads", "threads_lent", "thread_waiters")
    return {
        name: REGISTRY.get_sample_value(f"gunicorn_request_{name}", {"kind": "web"})
        for name in names
    }


async def three_requests_on_two_threads(app: PooledExecutorASGIHandler) -> None:
    asgi_urls.RELEASE = asyncio.Event()
    app.executors = ExecutorPool(2)
    held = [await Request(app, "/hold").start() for _ in range(2)]
    await asyncio.sleep(0.2)
    waiting = await Request(app, "/hold").start()
    await asyncio.sleep(0.2)
    assert app.executors.created == 2
    assert len(app.executors._waiters) == 1  # the third request waits for a thread
    # In the worker's metrics (alert WebRequestThreadsBusy): both lent, one request waiting.
    assert request_thread_gauges(app) == {"threads": 2, "threads_lent": 2, "thread_waiters": 1}

    asgi_urls.RELEASE.set()
    threads = [(await r.response())["threads"][0] for r in held]
    assert threads[0] != threads[1]
    # It got one of the two threads back, not a third.
    assert (await waiting.response())["threads"][0] in threads
    assert app.executors.created == 2
    assert request_thread_gauges(app) == {"threads": 2, "threads_lent": 0, "thread_waiters": 0}


@pytest.mark.django_db(transaction=True)
def test_a_request_that_never_leaves_the_event_loop_is_served_while_every_thread_is_lent(app):
    # Threads bound the requests that run sync code, not the async ones (the fan-out, a cached
    # page): those take no thread, so they never queue behind the ones that do.
    asyncio.run(served_while_every_thread_is_lent(app))


async def its_one_thread_held(app: PooledExecutorASGIHandler, wait: float = 20) -> Request:
    """A pool of one thread, lent to a request that holds it until asgi_urls.RELEASE is set;
    another request waits up to `wait` seconds for it."""
    asgi_urls.RELEASE = asyncio.Event()
    app.executors = ExecutorPool(1, wait_seconds=wait)
    held = await Request(app, "/hold").start()
    await asyncio.sleep(0.2)
    return held


async def served_while_every_thread_is_lent(app: PooledExecutorASGIHandler) -> None:
    held = await its_one_thread_held(app)
    waiting = await Request(app, "/threads").start()
    await asyncio.sleep(0.2)
    assert app.executors.created == 1
    assert len(app.executors._waiters) == 1  # /threads waits at its first sync call
    assert await asyncio.wait_for(get(app, "/nothing"), 5) == {"threads": []}
    assert app.executors.created == 1
    asgi_urls.RELEASE.set()
    thread = (await held.response())["threads"][0]
    assert (await waiting.response())["threads"] == [thread, thread]


@pytest.mark.django_db(transaction=True)
def test_a_request_gone_while_it_waits_for_a_thread_takes_none(app):
    asyncio.run(gone_while_waiting_for_a_thread(app))


async def gone_while_waiting_for_a_thread(app: PooledExecutorASGIHandler) -> None:
    held = await its_one_thread_held(app)
    gone = ApplicationCommunicator(app, scope("/threads"))
    await gone.send_input({"type": "http.request", "body": b""})
    await asyncio.sleep(0.2)
    assert len(app.executors._waiters) == 1
    await gone.send_input({"type": "http.disconnect"})
    await gone.wait(20)  # it ends without the thread it waited for
    (lease,) = app.executors._waiters
    assert lease.ended
    assert lease.executor is None
    assert app.executors.waiting() == 0  # still in the line, but waiting for nothing
    asgi_urls.RELEASE.set()
    thread = (await held.response())["threads"][0]
    # The thread went back to the pool, not to the request that left, and serves the next one.
    assert app.executors._idle
    assert not app.executors._waiters
    assert (await get(app, "/threads"))["threads"] == [thread, thread]


@pytest.mark.django_db(transaction=True)
def test_a_request_that_gets_no_thread_in_time_is_refused_503_having_run_nothing(app, caplog):
    # Nginx gives up on a request at 35 s: one that queued for a thread into that time could
    # commit its write after the client was answered 504. It is refused before it runs instead.
    from prometheus_client import REGISTRY

    caplog.set_level(logging.INFO)

    counted = ("web_requests_refused_total", {"reason": "no_request_thread"})
    before = REGISTRY.get_sample_value(*counted) or 0
    status, headers, body = asyncio.run(refused_while_the_thread_is_held(app))
    assert status == 503
    assert json.loads(body) == {
        "error": {"code": "server_busy", "message": "The server is busy; retry shortly."}
    }
    assert (b"retry-after", b"1") in headers
    assert REGISTRY.get_sample_value(*counted) == before + 1
    assert asgi_urls.WRITES == [1]  # the call ran once: for the read after, not the refused
    # One line per refusal, the runtime's: not Django's "Service Unavailable" error beside it.
    said = [(r.name, r.levelname) for r in caplog.records if r.name != "core.requests"]
    assert said == [("runtime.asgi", "WARNING")], said


@pytest.mark.django_db(transaction=True)
def test_a_request_that_may_write_is_lent_a_thread_before_the_reads_waiting_ahead_of_it(app):
    # A write waits a bounded time, a read does not: served in arrival order, a flood of reads
    # would keep every write waiting until it is refused.
    assert asyncio.run(a_read_then_a_write_waiting(app)) == ["write", "read"]


async def a_read_then_a_write_waiting(app: PooledExecutorASGIHandler) -> list[str]:
    asgi_urls.CALLED.clear()
    held = await its_one_thread_held(app)
    read = asyncio.ensure_future(answer(app, scope("/called/read")))
    await asyncio.sleep(0.2)
    write = asyncio.ensure_future(answer(app, scope("/called/write", method="POST")))
    await asyncio.sleep(0.2)
    assert (len(app.executors._waiters), len(app.executors._writers)) == (1, 1)
    asgi_urls.RELEASE.set()
    await held.response()
    assert [(await read)[0], (await write)[0]] == [200, 200]
    return asgi_urls.CALLED


async def refused_while_the_thread_is_held(
    app: PooledExecutorASGIHandler,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    asgi_urls.WRITES.clear()
    held = await its_one_thread_held(app, wait=0.3)
    refused = await answer(app, scope("/write", method="POST"), b"")
    assert asgi_urls.WRITES == []
    assert not app.executors._writers  # it left the line
    # A read waits past the bound: cut off by Nginx, it would have written nothing.
    reading = await Request(app, "/write").start()
    await asyncio.sleep(0.6)
    asgi_urls.RELEASE.set()
    await held.response()
    assert await reading.response() == {"written": 1}
    return refused


def test_the_watchdog_answers_504_only_a_stuck_request_that_saved_nothing(caplog):
    """Its 504 says nothing was saved (core/write_deadline.py), so it is never sent for a request
    that committed something, nor during a COMMIT; the stuck thread is reported all the same."""
    handler = PooledExecutorASGIHandler()
    release = threading.Event()
    deadlines = {
        "nothing saved": write_deadline.Deadline(at=0.0),
        "saved": write_deadline.Deadline(at=0.0, saved=True),
        # Its thread has a timeout's grace after it saved to come back with its answer.
        "just saved": write_deadline.Deadline(at=0.0, saved=True, saved_at=time.monotonic() + 60),
        "committing": write_deadline.Deadline(at=0.0, committing=True),
    }
    aborts: dict[str, asyncio.Future[None]] = {}

    async def four_stuck() -> None:
        for name, deadline in deadlines.items():
            lease = Lease(handler.executors)
            lease.submit(release.wait)
            while lease.executor is None or lease.executor.busy_since is None:
                await asyncio.sleep(0.01)
            aborts[name] = asyncio.get_running_loop().create_future()
            handler._in_flight[lease] = asgi.Watched(aborts[name], deadline)
        await asyncio.sleep(0.05)
        handler._watch(0.01)
        handler._watch(0.01)  # each stuck request is reported once

    try:
        asyncio.run(four_stuck())
    finally:
        release.set()
        handler.executors.close()
    assert {name: abort.done() for name, abort in aborts.items()} == {
        "nothing saved": True,
        "saved": False,
        "just saved": False,
        "committing": False,
    }
    assert deadlines["nothing saved"].answered
    assert caplog.text.count("past the timeout (WORKER TIMEOUT)") == 2
    assert asgi.GATEWAY_TIMEOUT_BODY.decode().count(write_deadline.NOTHING_SAVED) == 1


async def served_until_the_client_is_told_it_ended(app: ASGIHandler, path: str) -> None:
    """One request as Uvicorn serves it: once the response is complete, the app's receive()
    answers http.disconnect (what Django's disconnect listener then raises on)."""
    communicator = ApplicationCommunicator(app, scope(path))
    await communicator.send_input({"type": "http.request", "body": b""})
    while (await communicator.receive_output(20)).get("more_body", True):
        pass
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(20)


async def cyclic_garbage_of_requests(app: ASGIHandler, path: str, count: int) -> list[object]:
    """What the garbage collector, not reference counting, would have to free of `count`
    requests: objects only a reference cycle keeps."""
    await served_until_the_client_is_told_it_ended(app, path)  # imports and caches warmed
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(count):
            await served_until_the_client_is_told_it_ended(app, path)
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/nothing", "/threads"])
def test_a_request_leaves_nothing_for_the_garbage_collector(app, path):
    """Django's disconnect listener raises RequestAborted when the response is complete, and its
    middleware ties the request to itself (request.user, request.auser, the messages storage):
    cycles that kept every request's objects until a collection, which had them all to
    examine. Each request's objects are freed when it ends."""
    garbage = asyncio.run(cyclic_garbage_of_requests(app, path, 5))
    assert [type(o).__qualname__ for o in garbage] == []
