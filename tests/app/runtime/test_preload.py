"""A preloading Gunicorn master builds what its workers share and freezes its objects out of the
collector before it forks (gunicorn.conf.py's when_ready, config/preload.py): a worker serves
its first request with the URL resolver already built, the modules it needs already imported,
and the frozen objects inherited."""

import contextlib
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from testcontainers.core.container import DockerContainer

from tests.app.conftest import DB_PASSWORD
from tests.app.runtime.gunicorn_process import Gunicorn, free_port, gunicorn
from tests.app.runtime.preload_report import WORKER_MODULES
from tests.support import ROOT, wait_until

# The master warms up only once the database answers (a Postgres with no tables: the OpenAPI
# document needs none); no Redis runs for these tests.
OPENAPI_PATH = "/api/openapi.json"
OPENAPI_VIEW = "api:openapi-json"


@pytest.fixture
def database(postgres_container: DockerContainer) -> dict[str, str]:
    return {
        "DB_HOST": postgres_container.get_container_host_ip(),
        "DB_PORT": str(postgres_container.get_exposed_port(5432)),
        "DB_PASSWORD": DB_PASSWORD,
    }


def preloaded(
    tmp_path: Path, *, ready: bool = True, **env: str
) -> AbstractContextManager[Gunicorn]:
    """Gunicorn serving preload_report's app from one preloading worker, warm-up on."""
    return gunicorn(
        tmp_path,
        "tests.app.runtime.preload_report:application",
        ready=ready,
        **{
            "PYTHONPATH": f"{ROOT / 'app'}:{ROOT}",
            "GUNICORN_WORKERS": "1",
            "GUNICORN_PRELOAD": "true",
            "GUNICORN_PRELOAD_FREEZE": "true",
            **env,
        },
    )


def report(url: str) -> dict:
    def answered() -> dict | None:
        try:
            return requests.get(f"{url}/preload-report", timeout=5).json()
        except requests.RequestException:
            return None

    return wait_until(answered, timeout=60, what="the preload report")


@pytest.mark.parametrize("freeze", ["true", "false"])
def test_workers_inherit_a_built_resolver_and_frozen_objects_only_when_on(
    tmp_path, freeze, database
):
    with preloaded(
        tmp_path,
        GUNICORN_PRELOAD_FREEZE=freeze,
        GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
        **database,
    ) as server:
        seen = report(server.url)
        said = [m for m in server.messages() if m.startswith("preload: ")]
    assert seen["resolver_built_at_import"] is False
    if freeze == "true":
        assert seen["frozen"] > 10_000
        assert seen["resolver_built"] is True
        assert seen["imported_before_fork"] == sorted(WORKER_MODULES)
        # The master served its warm-up requests, and ended the request thread it borrowed: a
        # worker inheriting an idle executor without its thread would queue its requests on it.
        assert seen["master_threads"] == ["MainThread"]
        frozen = said[0].split(" and ")[1].split()[0]
        assert said == [
            f"preload: structures built and {frozen} objects frozen before the fork; "
            "warm-up: 2 requests served (200, 200)"
        ]
    else:
        assert seen["frozen"] == 0
        # Uvicorn sets up its loop only once forked (its HTTP protocol comes with the worker
        # class, runtime/http_protocol.py, which Gunicorn's master imports either way).
        assert "uvloop" not in seen["imported_before_fork"]
        assert said == []


def test_a_warm_up_import_that_fails_is_logged_and_the_workers_serve(tmp_path, database):
    """The master's warm-up touches settings before any request does: one that cannot be
    imported must not stop Gunicorn from starting (config/preload.py's _tolerated)."""
    with preloaded(
        tmp_path,
        DJANGO_SETTINGS_MODULE="tests.app.runtime.preload_broken_settings",
        GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
        **database,
    ) as server:
        seen = report(server.url)
        warned = [m for m in server.messages() if "could not be imported" in m]
    assert seen["frozen"] > 10_000
    assert seen["imported_before_fork"] == sorted(WORKER_MODULES)
    assert warned == ["preload: the cache 'unused' could not be imported before the fork"]


def test_the_masters_warm_up_requests_are_counted_nowhere(tmp_path, database):
    """The requests the master serves before the fork (config/preload.py's preload_requests)
    were made by no client: /metrics never counts them, their files are gone, and the worker
    still reads its own memory on its first request, not on the master's schedule."""
    with preloaded(
        tmp_path,
        GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
        **database,
    ) as server:
        report(server.url)
        said = [m for m in server.messages() if m.startswith("preload: structures built")]
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        for _ in range(3):  # the worker's own, each counted once
            assert requests.get(f"{server.url}{OPENAPI_PATH}", timeout=5).status_code == 200
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        files = sorted(path.name for path in (tmp_path / "metrics").iterdir())
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    counted = {s.labels["view"]: s.value for s in samples if s.name == "django_http_requests_total"}
    # The master's 2 are not counted, and the worker's 3 are: a value the worker inherited from
    # the warm-up would write to its removed files.
    assert said[0].endswith("; warm-up: 2 requests served (200, 200)"), said
    assert counted[OPENAPI_VIEW] == 3, (counted, files)
    assert counted["healthz"] >= 1, counted
    assert next(s.value for s in samples if s.name == "gunicorn_worker_rss_bytes") > 0, text
    assert not [name for name in files if "discarded" in name], files


def test_the_warm_up_stops_at_its_first_failed_answer(tmp_path, database):
    """A warm-up path that fails (the database answers, the product table is not there yet, and
    nothing listens where the caches are): the master logs its 500, warms no further, ends the
    database checks the read started, and the workers serve."""
    closed = str(free_port())
    with preloaded(
        tmp_path,
        GUNICORN_PRELOAD_WARM_PATHS=f"/api/products,{OPENAPI_PATH}",
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=closed,
        REDIS_CACHE_HOST="127.0.0.1",
        REDIS_CACHE_PORT=closed,
        **database,
    ) as server:
        seen = report(server.url)
        said = [m for m in server.messages() if m.startswith("preload: structures built")]
        assert requests.get(f"{server.url}{OPENAPI_PATH}", timeout=10).status_code == 200
    assert said, server.messages()
    assert said[0].endswith(
        "; warm-up: 1 request served (500), 3 of 4 not: GET /api/products answered 500"
    ), said
    assert seen["master_threads"] == ["MainThread"]


def test_with_a_database_that_never_answers_the_master_serves_no_warm_up_request(tmp_path):
    """PgBouncer holding the query for a server it cannot reach looks like this: a listener that
    accepts and never answers. Gunicorn listens while its master warms up, so the master gives
    the database DATABASE_PROBE_SECONDS, then starts its workers cold, holding no thread."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with preloaded(
            tmp_path,
            GUNICORN_PRELOAD_WARM_PATHS=f"/api/products,{OPENAPI_PATH}",
            DB_HOST="127.0.0.1",
            DB_PORT=str(silent.getsockname()[1]),
        ) as server:
            seen = report(server.url)
            said = [m for m in server.messages() if m.startswith("preload: ")]
    assert said[0].endswith(
        "; warm-up: no request served, 4 of 4 not: the database did not answer SELECT 1 (within 2s)"
    ), said
    assert seen["master_threads"] == ["MainThread"]


def _serve_postgres_clients(
    listener: socket.socket,
    stop: threading.Event,
    authenticated: Callable[[socket.socket, bytes], None],
) -> None:
    """Accepts clients until `stop`: refuses each encryption request (SSL, GSS: 8 bytes), lets
    `authenticated` answer after the startup message, then holds the connection, unread."""
    listener.settimeout(0.2)
    held = []
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        startup = conn.recv(65536)
        while len(startup) == 8:
            conn.sendall(b"N")
            startup = conn.recv(65536)
        authenticated(conn, startup)
        held.append(conn)
    for conn in held:
        conn.close()


def _pgbouncer_holding_queries(listener: socket.socket, stop: threading.Event) -> None:
    """PgBouncer with no server to give a query to: it authenticates the client itself, then
    holds each query it is sent (query_wait_timeout)."""

    def ready(conn: socket.socket, startup: bytes) -> None:
        conn.sendall(b"R" + struct.pack("!ii", 8, 0) + b"Z" + struct.pack("!i", 5) + b"I")

    _serve_postgres_clients(listener, stop, ready)


def test_a_database_that_takes_the_query_and_never_answers_costs_the_start_2_seconds(tmp_path):
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        pgbouncer = threading.Thread(target=_pgbouncer_holding_queries, args=(listener, stop))
        pgbouncer.start()
        try:
            with preloaded(
                tmp_path,
                GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
                DB_HOST="127.0.0.1",
                DB_PORT=str(listener.getsockname()[1]),
            ) as server:
                seen = report(server.url)
                entries = server.entries()
        finally:
            stop.set()
            pgbouncer.join(5)
    listening = next(e for e in entries if str(e["message"]).startswith("Listening at"))
    gave_up = next(e for e in entries if "the database did not answer" in str(e["message"]))
    # The probe's 2 s, not psycopg's cancel and its own waits (5 s each) on top.
    waited = datetime.fromisoformat(gave_up["timestamp"]) - datetime.fromisoformat(
        listening["timestamp"]
    )
    assert waited.total_seconds() < 5, waited
    assert seen["master_threads"] == ["MainThread"]


def _message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", 4 + len(body)) + body


# The answer to the probe's SELECT 1 (psycopg sends a query without parameters as one simple
# Query message): its row description, the row, its completion, ready again.
_SELECT_1 = (
    _message(
        b"T", struct.pack("!h", 1) + b"?column?\0" + struct.pack("!ihihih", 0, 0, 23, 4, -1, 0)
    )
    + _message(b"D", struct.pack("!hi", 1, 1) + b"1")
    + _message(b"C", b"SELECT 1\0")
    + _message(b"Z", b"I")
)


# What a server says once it has authenticated a client: Django refuses a server that does not
# give its version, and psycopg reads the encoding.
_READY = b"".join(
    _message(b"S", f"{name}\0{value}\0".encode())
    for name, value in (
        ("server_version", "17.0"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
    )
) + _message(b"Z", b"I")


def _postgres_frozen_after_the_probe(
    listener: socket.socket, stop: threading.Event, taken: threading.Event
) -> None:
    """A database that freezes once the master's probe has passed: the probe's SELECT 1
    (application_name "preload") is answered, every query of the warm-up's own connection is
    taken and never answered."""

    def ready(conn: socket.socket, startup: bytes) -> None:
        conn.sendall(_message(b"R", struct.pack("!i", 0)) + _READY)
        if b"application_name\0preload\0" not in startup:
            taken.set()  # the warm-up's own connection: its query is on its way
            return
        query = _message(b"Q", b"SELECT 1\0")
        received = b""
        while not received.endswith(query):
            received += conn.recv(65536)
        conn.sendall(_SELECT_1)

    _serve_postgres_clients(listener, stop, ready)


@dataclass
class Frozen:
    env: dict[str, str]
    taken: threading.Event  # the warm-up connected, after the probe


@contextlib.contextmanager
def frozen_after_the_probe() -> Iterator[Frozen]:
    stop = threading.Event()
    taken = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        database = threading.Thread(
            target=_postgres_frozen_after_the_probe, args=(listener, stop, taken)
        )
        database.start()
        closed = str(free_port())  # no cache: the product list goes to the database
        try:
            env = {
                "DB_HOST": "127.0.0.1",
                "DB_PORT": str(listener.getsockname()[1]),
                "REDIS_HOST": "127.0.0.1",
                "REDIS_PORT": closed,
                "REDIS_CACHE_HOST": "127.0.0.1",
                "REDIS_CACHE_PORT": closed,
            }
            yield Frozen(env, taken)
        finally:
            stop.set()
            database.join(5)


def seconds_between(entries: list[dict], first: str, then: str) -> float:
    start = next(e for e in entries if str(e["message"]).startswith(first))
    end = next(e for e in entries if then in str(e["message"]))
    delta = datetime.fromisoformat(end["timestamp"]) - datetime.fromisoformat(start["timestamp"])
    return delta.total_seconds()


def test_a_database_frozen_during_the_warm_up_delays_the_start_by_the_budget_at_most(tmp_path):
    """The probe passed, then the database froze under the warm-up's query (PgBouncer or the
    primary paused): at the budget the request is cancelled and its query cut, and the master
    forks holding no thread. Without the cut it would wait for as long as the database does."""
    with (
        frozen_after_the_probe() as frozen,
        preloaded(tmp_path, GUNICORN_PRELOAD_WARM_PATHS="/api/products", **frozen.env) as server,
    ):
        seen = report(server.url)
        entries = server.entries()
    said = [str(e["message"]) for e in entries if "warm-up:" in str(e["message"])]
    assert said[0].endswith(
        "warm-up: no request served, 2 of 2 not: the 10s budget ran out during GET /api/products"
    ), said
    # The budget (10 s) and the cut's effect, not the frozen database's time.
    assert seconds_between(entries, "Listening at", "warm-up:") < 13
    assert seen["master_threads"] == ["MainThread"]


def test_a_stop_asked_for_during_the_warm_up_ends_it_at_once(tmp_path):
    """SIGTERM while the master warms up (docker stop, a rollout): the request in flight is
    cancelled, its query cut, and Gunicorn stops as it would have, without waiting out the
    budget. Gunicorn handles the signal once when_ready returns."""
    with (
        frozen_after_the_probe() as frozen,
        preloaded(
            tmp_path, GUNICORN_PRELOAD_WARM_PATHS="/api/products", ready=False, **frozen.env
        ) as server,
    ):
        assert frozen.taken.wait(30), server.messages()
        time.sleep(0.5)  # the warm-up's query is sent, and held
        asked = datetime.now(UTC)
        server.process.send_signal(signal.SIGTERM)
        # The workers forked after it then stop as any do: their own shutdown, with the
        # database still frozen under their checks, is bounded by Gunicorn's graceful_timeout.
        code = server.process.wait(timeout=60)
        entries = server.entries()
    said = [e for e in entries if "warm-up:" in str(e["message"])]
    message = str(said[0]["message"])
    assert message.endswith("2 of 2 not: Gunicorn was asked to stop during GET /api/products")
    assert code == 0
    # The warm-up ended at the stop, not at its budget (10 s).
    ended_after = datetime.fromisoformat(said[0]["timestamp"]) - asked
    assert ended_after.total_seconds() < 5, ended_after
