"""A preloading Gunicorn master builds what its workers share and freezes its objects out of the
collector before it forks (gunicorn.conf.py's when_ready, config/preload.py): a worker serves
its first request with the URL resolver already built, the modules it needs already imported,
and the frozen objects inherited."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.app.runtime.gunicorn_process import free_port, gunicorn
from tests.app.runtime.preload_report import WORKER_MODULES
from tests.support import ROOT, wait_until

# Neither Postgres nor Redis runs for these tests: the master warms with a path that needs neither.
OPENAPI_PATH = "/api/openapi.json"
OPENAPI_VIEW = "api:openapi-json"


def report(url: str) -> dict:
    def answered() -> dict | None:
        try:
            return requests.get(f"{url}/preload-report", timeout=5).json()
        except requests.RequestException:
            return None

    return wait_until(answered, timeout=60, what="the preload report")


@pytest.mark.parametrize("freeze", ["true", "false"])
def test_workers_inherit_a_built_resolver_and_frozen_objects_only_when_on(tmp_path, freeze):
    with gunicorn(
        tmp_path,
        "tests.app.runtime.preload_report:application",
        PYTHONPATH=f"{ROOT / 'app'}:{ROOT}",
        GUNICORN_WORKERS="1",
        GUNICORN_PRELOAD="true",
        GUNICORN_PRELOAD_FREEZE=freeze,
        GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
    ) as server:
        seen = report(server.url)
        said = [m for m in server.messages() if m.startswith("preload: ")]
    assert seen["resolver_built_at_import"] is False
    if freeze == "true":
        assert seen["frozen"] > 10_000
        assert seen["resolver_built"] is True
        assert seen["imported_before_fork"] == sorted(WORKER_MODULES)
        # The master served its warm-up request, and ended the request thread it borrowed: a
        # worker inheriting an idle executor without its thread would queue its requests on it.
        assert seen["master_requests"] == [["GET", OPENAPI_VIEW, 200]]
        assert seen["master_threads"] == ["MainThread"]
        assert said == [
            "preload: structures built, 2 requests (200, 200) served and "
            f"{said[0].split(' served and ')[1].split()[0]} objects frozen before the fork"
        ]
    else:
        assert seen["frozen"] == 0
        assert seen["master_requests"] == []
        # Uvicorn sets up its loop and protocol only once forked.
        assert "uvloop" not in seen["imported_before_fork"]
        assert "httptools" not in seen["imported_before_fork"]
        assert said == []


def test_a_warm_up_import_that_fails_is_logged_and_the_workers_serve(tmp_path):
    """The master's warm-up touches settings before any request does: one that cannot be
    imported must not stop Gunicorn from starting (config/preload.py's _tolerated)."""
    with gunicorn(
        tmp_path,
        "tests.app.runtime.preload_report:application",
        PYTHONPATH=f"{ROOT / 'app'}:{ROOT}",
        DJANGO_SETTINGS_MODULE="tests.app.runtime.preload_broken_settings",
        GUNICORN_WORKERS="1",
        GUNICORN_PRELOAD="true",
        GUNICORN_PRELOAD_FREEZE="true",
        GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
    ) as server:
        seen = report(server.url)
        warned = [m for m in server.messages() if "could not be imported" in m]
    assert seen["frozen"] > 10_000
    assert seen["imported_before_fork"] == sorted(WORKER_MODULES)
    assert warned == ["preload: the cache 'unused' could not be imported before the fork"]


def test_the_masters_warm_up_requests_are_counted_nowhere(tmp_path):
    """The requests the master serves before the fork (config/preload.py's preload_requests)
    were made by no client: /metrics never counts them, their files are gone, and the worker
    still reads its own memory on its first request, not on the master's schedule."""
    with gunicorn(
        tmp_path,
        "tests.app.runtime.preload_report:application",
        PYTHONPATH=f"{ROOT / 'app'}:{ROOT}",
        GUNICORN_WORKERS="1",
        GUNICORN_PRELOAD="true",
        GUNICORN_PRELOAD_FREEZE="true",
        GUNICORN_PRELOAD_WARM_PATHS=OPENAPI_PATH,
    ) as server:
        assert report(server.url)["master_requests"] == [["GET", OPENAPI_VIEW, 200]]
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        files = sorted(path.name for path in (tmp_path / "metrics").iterdir())
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    counted = {s.labels["view"]: s.value for s in samples if s.name == "django_http_requests_total"}
    # The worker's files hold the series the master's request labelled, at 0: prometheus_client
    # sets up each value a process inherited as it first writes after the fork.
    assert counted[OPENAPI_VIEW] == 0, (counted, files)
    assert counted["healthz"] >= 1, counted
    assert next(s.value for s in samples if s.name == "gunicorn_worker_rss_bytes") > 0, text
    assert not [name for name in files if "discarded" in name], files


def test_with_the_database_and_cache_down_the_warm_up_stops_at_the_first_failure(tmp_path):
    """A warm-up path that needs the database, with nothing listening where the database and
    the caches are: its first answer is a 503, the master warms no further, ends the database
    checks the read started, and the workers serve."""
    closed = str(free_port())
    with gunicorn(
        tmp_path,
        "tests.app.runtime.preload_report:application",
        PYTHONPATH=f"{ROOT / 'app'}:{ROOT}",
        GUNICORN_WORKERS="1",
        GUNICORN_PRELOAD="true",
        GUNICORN_PRELOAD_FREEZE="true",
        GUNICORN_PRELOAD_WARM_PATHS=f"/api/products,{OPENAPI_PATH}",
        DB_HOST="127.0.0.1",
        DB_PORT=closed,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=closed,
        REDIS_CACHE_HOST="127.0.0.1",
        REDIS_CACHE_PORT=closed,
    ) as server:
        seen = report(server.url)
        said = [m for m in server.messages() if m.startswith("preload: structures built")]
        assert requests.get(f"{server.url}{OPENAPI_PATH}", timeout=10).status_code == 200
    assert said, server.messages()
    assert said[0].startswith("preload: structures built, 1 request (503) served"), said
    assert seen["master_threads"] == ["MainThread"]
