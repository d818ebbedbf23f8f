"""The Uvicorn worker's drain (core/workers.py), on a real Gunicorn: a stopping worker never
closes an idle keep-alive connection itself, which is what made a POST from Nginx a 502."""

import os
import signal
import socket
import time

import pytest

from tests.app.core.gunicorn_process import gunicorn
from tests.support import wait_until

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


@pytest.mark.parametrize("stop", ["SIGTERM to the master", "SIGTERM to the worker"])
def test_a_stopping_worker_leaves_closing_idle_connections_to_the_client(tmp_path, stop):
    env = {"GUNICORN_WORKERS": "1", "GUNICORN_DRAIN_SECONDS": "30", "GUNICORN_MAX_REQUESTS": "0"}
    with gunicorn(tmp_path, **env) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        other = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        for conn in (idle, other):
            assert b"connection: close" not in exchange(conn)  # kept alive, now idle

        if stop == "SIGTERM to the master":
            server.process.send_signal(signal.SIGTERM)
        else:
            (worker,) = [
                int(m.split("pid: ")[1].split()[0])
                for m in server.messages()
                if "Booting worker" in m
            ]
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
