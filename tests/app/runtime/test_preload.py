"""A preloading Gunicorn master builds what its workers share and freezes its objects out of the
collector before it forks (gunicorn.conf.py's when_ready, config/preload.py): a worker serves
its first request with the URL resolver already built, the modules it needs already imported,
and the frozen objects inherited."""

import socket
import struct
import threading
from contextlib import AbstractContextManager
from datetime import datetime
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


def preloaded(tmp_path: Path, **env: str) -> AbstractContextManager[Gunicorn]:
    """Gunicorn serving preload_report's app from one preloading worker, warm-up on."""
    return gunicorn(
        tmp_path,
        "tests.app.runtime.preload_report:application",
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
        assert said == [
            "preload: structures built, 2 requests (200, 200) served and "
            f"{said[0].split(' served and ')[1].split()[0]} objects frozen before the fork"
        ]
    else:
        assert seen["frozen"] == 0
        # Uvicorn sets up its loop and protocol only once forked.
        assert "uvloop" not in seen["imported_before_fork"]
        assert "httptools" not in seen["imported_before_fork"]
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
    assert said[0].startswith("preload: structures built, 2 requests (200, 200) served"), said
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
    assert said[0].startswith("preload: structures built, 1 request (500) served"), said
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
    assert said[0] == "preload: no warm-up request: the database did not answer within 2s", said
    assert said[1].startswith("preload: structures built, no request served"), said
    assert seen["master_threads"] == ["MainThread"]


def _pgbouncer_holding_queries(listener: socket.socket, stop: threading.Event) -> None:
    """PgBouncer with no server to give a query to: it authenticates the client itself, then
    holds each query it is sent (query_wait_timeout)."""
    listener.settimeout(0.2)
    held = []
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        # An encryption request (SSL, GSS: 8 bytes) is refused; then comes the startup message.
        while len(conn.recv(65536)) == 8:
            conn.sendall(b"N")
        ready = b"R" + struct.pack("!ii", 8, 0) + b"Z" + struct.pack("!i", 5) + b"I"
        conn.sendall(ready)
        held.append(conn)  # the query is read by nobody, never answered
    for conn in held:
        conn.close()


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
