"""The ASGI lifespan (runtime/lifespan.py): a stopping worker closes its event loop's long-lived
clients (core.aio) and, under the pooled handler, the database connections its request threads
kept open, under either handler SERVER_RUNTIME picks."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.db import connection

from core.aio import PerLoop
from runtime.asgi import PooledExecutorASGIHandler
from runtime.lifespan import Lifespan
from tests.app.runtime.test_asgi import get
from tests.support import wait_until

pytestmark = [pytest.mark.urls("tests.app.runtime.asgi_urls")]


class Client:
    def __init__(self) -> None:
        self.closed = False


async def _close(client: Client) -> None:
    client.closed = True


clients: PerLoop[Client] = PerLoop(Client, _close)


@pytest.fixture(params=["pooled", "stock"])
def lifespan(request: pytest.FixtureRequest, conn_max_age: Any) -> Iterator[Lifespan]:
    if request.param == "stock":
        # A stock request's connection would outlive its thread, open until collected.
        conn_max_age(0)
        handler: ASGIHandler = ASGIHandler()
    else:
        conn_max_age(60)  # connections outlive their request, as in production
        handler = PooledExecutorASGIHandler()
    yield Lifespan(handler, handler=handler)
    if isinstance(handler, PooledExecutorASGIHandler):
        handler.executors.close()


def lifespan_scope(app: Lifespan) -> ApplicationCommunicator:
    return ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})


async def answer(communicator: ApplicationCommunicator, message: str) -> str:
    await communicator.send_input({"type": message})
    return str((await communicator.receive_output(20))["type"])


async def lifespan_messages(app: Lifespan, *messages: str) -> list[str]:
    # The last message ends the lifespan, so the app returns: waiting for it before that would
    # wait out the whole timeout.
    communicator = lifespan_scope(app)
    answers = [await answer(communicator, message) for message in messages]
    await communicator.wait(20)
    return answers


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        (count,) = cursor.fetchone()
    return bool(count)


@pytest.mark.django_db(transaction=True)
def test_startup_and_shutdown_are_answered_and_requests_pass_through(lifespan):
    async def scenario() -> tuple[list[str], dict[str, Any]]:
        # One lifespan around the request, as a server holds it.
        communicator = lifespan_scope(lifespan)
        answered = [await answer(communicator, "lifespan.startup")]
        response = await get(lifespan, "/threads")  # type: ignore[arg-type]
        answered.append(await answer(communicator, "lifespan.shutdown"))
        await communicator.wait(20)
        return answered, response

    answered, response = asyncio.run(scenario())
    assert answered == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert response["backend_pid"] > 0


@pytest.mark.django_db(transaction=True)
def test_shutdown_closes_the_loops_clients(lifespan):
    async def scenario() -> tuple[Client, Client, Client]:
        async with clients.use() as used:
            pass
        async with clients.use() as again:
            pass
        await lifespan_messages(lifespan, "lifespan.shutdown")
        async with clients.use() as after:  # a new one: the closed one is forgotten
            pass
        return used, again, after

    used, again, after = asyncio.run(scenario())
    assert used is again
    assert used.closed
    assert after is not used


@pytest.mark.django_db(transaction=True)
def test_shutdown_ends_the_request_threads_database_connections(conn_max_age):
    # Pooled only (stock Django gives each request a thread of its own): a request thread keeps
    # its connection after the request (DB_CONN_MAX_AGE) until the shutdown closes it, with
    # Terminate, so the server's backend ends (within moments: the backend exits on its own).
    conn_max_age(60)
    handler = PooledExecutorASGIHandler()
    app = Lifespan(handler, handler=handler)
    pid = int(asyncio.run(get(app, "/threads"))["backend_pid"])  # type: ignore[arg-type]
    assert backend_alive(pid)
    asyncio.run(lifespan_messages(app, "lifespan.shutdown"))
    wait_until(lambda: not backend_alive(pid), timeout=10, what=f"backend {pid} to end")
    assert handler.executors.created == 0


def check_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'replica-check'")
        return [pid for (pid,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_shutdown_ends_the_database_checks_and_their_connections(monkeypatch):
    # A worker's replica checks hold a connection each: dropped at exit, PgBouncer would log a
    # client that died. (The unit suite's replica mirrors the primary: the check runs, and finds
    # it no standby.)
    from core import db

    monkeypatch.setattr(db, "_checkers_stopping", threading.Event())
    monkeypatch.setattr(db, "_checkers", {})
    thread = threading.Thread(target=db._checker_run, args=("replica",), daemon=True)
    db._checkers["replica"] = thread
    thread.start()
    pids = wait_until(check_backends, timeout=10, what="the check's connection")
    app = Lifespan(ASGIHandler(), handler=ASGIHandler())
    asyncio.run(lifespan_messages(app, "lifespan.shutdown"))
    assert not thread.is_alive()
    wait_until(lambda: not set(pids) & set(check_backends()), timeout=10, what="the check's end")
