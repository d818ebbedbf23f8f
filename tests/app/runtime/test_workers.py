"""The Uvicorn worker's drain (runtime/workers.py), on a real Gunicorn: a stopping worker never
closes an idle keep-alive connection itself, which is what made a POST from Nginx a 502.

What every server must do runs under both workers SERVER_RUNTIME picks from (pooled: ours;
stock: uvicorn_worker.UvicornWorker as released, the way back). The drain and the heartbeat
every second are our worker's own gains, so those tests run for it alone."""

import asyncio
import json
import logging
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import uvloop
from gunicorn.config import Config
from gunicorn.sock import TCPSocket

from runtime.workers import plain_sockets
from tests.app.runtime.gunicorn_process import gunicorn
from tests.support import FAULT_APP_ENV, wait_until

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


def exchange(conn: socket.socket) -> bytes:
    """Sends one request and reads one complete response: the probe's body comes chunked."""
    conn.sendall(REQUEST)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = conn.recv(4096)
        assert chunk, f"closed by the server after {data!r}"
        data += chunk
    return data.partition(b"\r\n\r\n")[0].lower()


def still_open(conn: socket.socket) -> bool:
    """No data waiting and no end of stream: the server has not closed it."""
    conn.setblocking(False)
    try:
        return conn.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    finally:
        conn.setblocking(True)


@pytest.mark.parametrize("runtime", ["pooled", "stock"])
def test_every_runtime_answers_json_and_finishes_the_request_in_flight_on_sigterm(
    tmp_path, runtime
):
    with socket.socket() as silent:  # connections complete (the kernel's backlog), no answer
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = str(silent.getsockname()[1])
        env = {
            "SERVER_RUNTIME": runtime,
            "GUNICORN_WORKERS": "1",
            # /readyz's checks wait on these dependencies that never answer: a slow request.
            "READYZ_TIMEOUT": "3",
            **{f"{name}_HOST": "127.0.0.1" for name in ("DB", "REDIS", "REDIS_CACHE")},
            **{f"{name}_PORT": port for name in ("DB", "REDIS", "REDIS_CACHE")},
        }
        with gunicorn(tmp_path, **env) as server:
            worker = "runtime.workers" if runtime == "pooled" else "uvicorn_worker"
            assert f"Using worker: {worker}.UvicornWorker" in server.messages()
            assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(requests.get, server.url + "/readyz", timeout=30)
                time.sleep(1)  # the request is in flight
                server.process.send_signal(signal.SIGTERM)
                answer = slow.result()
            assert answer.status_code == 503
            assert answer.json()["status"] == "unavailable"
            assert server.process.wait(timeout=30) == 0
            for line in server.lines():
                assert set(json.loads(line)) >= {"timestamp", "level", "logger", "message"}


@pytest.mark.parametrize("stop", ["SIGTERM to the master", "SIGTERM to the worker"])
def test_a_stopping_worker_leaves_closing_idle_connections_to_the_client(tmp_path, stop):
    # Pooled only: uvicorn_worker.UvicornWorker closes idle connections at once (the 502 race).
    env = {"GUNICORN_WORKERS": "1", "GUNICORN_DRAIN_SECONDS": "30", "GUNICORN_MAX_REQUESTS": "0"}
    with gunicorn(tmp_path, **env) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        other = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        for conn in (idle, other):
            assert b"connection: close" not in exchange(conn)  # kept alive, now idle

        if stop == "SIGTERM to the master":
            server.process.send_signal(signal.SIGTERM)
        else:
            (worker,) = server.booted_workers()
            os.kill(worker, signal.SIGTERM)
        wait_until(
            lambda: any("draining before stop (SIGTERM)" in m for m in server.messages()),
            timeout=10,
            what="the drain to start",
        )
        # Uvicorn alone closed both idle connections within its 0.1s tick; give it ten.
        time.sleep(1)
        assert still_open(idle)
        assert still_open(other)
        if stop == "SIGTERM to the master":
            # Every listener is closed: Nginx gets a refusal, which it retries elsewhere even
            # for a POST, since it sent nothing.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=10)

        # The drain answers a request on an open connection, then closes it after the response.
        head = exchange(idle)
        assert head.startswith(b"http/1.1 200")
        assert b"connection: close" in head
        assert idle.recv(1) == b""

        # When the client closes the last one, the worker stops before the drain's deadline.
        other.close()
        wait_until(
            lambda: any("every connection closed by its client" in m for m in server.messages()),
            timeout=20,
            what="the drain to end with no connection left",
        )
        idle.close()


def test_a_worker_is_killed_for_silence_only_after_the_timeout(tmp_path):
    """The heartbeat every second: a stopped event loop is killed GUNICORN_TIMEOUT after its last
    beat. Upstream beats every timeout/2, so the kill came anywhere from half the timeout on
    (pooled only, for that reason)."""
    timeout = 10
    env = {"GUNICORN_WORKERS": "1", "GUNICORN_TIMEOUT": str(timeout), **FAULT_APP_ENV}
    with gunicorn(tmp_path, **env) as server:
        time.sleep(2)  # booted and beating
        started = time.monotonic()
        with pytest.raises(requests.RequestException):  # the worker dies holding the request
            requests.get(server.url + "/faults/hang?seconds=60", timeout=30)
        wait_until(
            lambda: any("aborted (WORKER TIMEOUT)" in m for m in server.messages()),
            timeout=30,
            what="the worker_abort line",
        )
        # At least the timeout less the beat interval and the arbiter's 1s check: a lower bound
        # of correctness (no early kill), not a speed claim.
        assert time.monotonic() - started >= timeout - 2


class Listener(TCPSocket):  # type: ignore[misc]  # untyped upstream
    """Gunicorn's listener, recording a socket another thread of the worker opens just as the
    listener's close() begins: a request connecting to PgBouncer while the worker drains."""

    opened_meanwhile: socket.socket | None = None

    def close(self) -> None:
        self.opened_meanwhile = socket.socket()
        super().close()


def test_closing_the_listener_closes_no_other_socket_of_the_worker():
    """uvloop closes the listening descriptor, then closes the object it was given; given
    Gunicorn's wrapper, that closed the same number again, by then another socket's (pooled
    only: plain_sockets is our worker's fix)."""
    listener = Listener(("127.0.0.1", 0), Config(), logging.getLogger("test"))
    port = listener.getsockname()[1]

    async def serve_and_close() -> None:
        (sock,) = plain_sockets([listener])
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, sock=sock)
        server.close()
        await server.wait_closed()

    uvloop.run(serve_and_close())

    victim = listener.opened_meanwhile
    if victim is not None:
        try:
            os.fstat(victim.fileno())  # EBADF if its descriptor was closed under it
        finally:
            victim.close()
    with pytest.raises(ConnectionRefusedError):  # the listener itself is closed
        socket.create_connection(("127.0.0.1", port), timeout=10)
