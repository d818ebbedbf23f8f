"""The worker profiles of app/gunicorn.conf.py, read by Gunicorn's own config loader."""

import os
import re
import subprocess
import sys
import time

import pytest

from runtime import workers
from tests.support import ROOT

PROBE = (
    "from gunicorn.app.base import Application\n"
    "class A(Application):\n"
    "    def init(self, *a): pass\n"
    "    def load(self): pass\n"
    "    def load_config(self):\n"
    "        self.load_config_from_file('gunicorn.conf.py')\n"
    "a = A(); c = a.cfg\n"
    "print(c.worker_class_str, c.workers, c.threads, c.preload_app, c.max_requests,\n"
    "      c.max_requests_jitter, c.timeout, c.graceful_timeout, c.keepalive, c.worker_tmp_dir,\n"
    "      c.wsgi_app)\n"
)


def in_app(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """This Python on `args`, in app/, with exactly `env`."""
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=check,
    )


def gunicorn_config(**env: str) -> list[str]:
    return in_app("-c", PROBE, env={**os.environ, **env}).stdout.split()


CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("profile", "worker_class", "workers", "app"),
    [
        ("io", "runtime.workers.UvicornWorker", CORES, "config.asgi:application"),
        ("cpu", "sync", 2 * CORES + 1, "config.wsgi:application"),
        ("mixed", "gthread", CORES + 1, "config.wsgi:application"),
    ],
)
def test_profiles_pick_worker_class_count_and_app(profile, worker_class, workers, app):
    values = gunicorn_config(GUNICORN_PROFILE=profile)
    assert values[0] == worker_class
    assert int(values[1]) == workers
    assert values[-1] == app


def test_defaults_recycle_preload_and_keep_alive_past_nginx():
    _, _, _, preload, max_requests, jitter, timeout, graceful, keepalive, tmp, _ = gunicorn_config()
    assert preload == "True"
    assert (int(max_requests), int(jitter)) == (50_000, 5_000)
    assert int(graceful) < int(timeout)
    # Nginx closes idle upstream connections after 4s: before Gunicorn's keepalive would, and
    # before a stopping worker's drain gives up waiting for it (runtime/workers.py).
    nginx_conf = (ROOT / "nginx/nginx.conf").read_text()
    upstream = nginx_conf[nginx_conf.index("upstream web {") :]
    upstream = upstream[: upstream.index("\n    }")]  # the block's end, not ${...}'s
    assert "keepalive_timeout 4s;" in upstream
    assert int(keepalive) > 4
    assert workers.DRAIN_SECONDS > 4
    assert tmp == "/dev/shm"


@pytest.mark.parametrize(("profile", "max_requests"), [("io", 50_000), ("cpu", 1000)])
def test_recycling_counts_suit_the_worker_model(profile, max_requests):
    # A Uvicorn worker serves hundreds of requests a second: at the sync count it was recycled
    # every few seconds (gunicorn.conf.py; make bench scenario 1's "max_requests 1000" row).
    values = gunicorn_config(GUNICORN_PROFILE=profile)
    assert (int(values[4]), int(values[5])) == (max_requests, max_requests // 10)


def test_env_overrides_the_profile():
    values = gunicorn_config(
        GUNICORN_PROFILE="io", GUNICORN_WORKERS="7", GUNICORN_MAX_REQUESTS="50"
    )
    assert values[1] == "7"
    assert values[4] == "50"


def test_the_stock_runtime_picks_upstreams_uvicorn_worker():
    values = gunicorn_config(GUNICORN_PROFILE="io", SERVER_RUNTIME="stock")
    assert values[0] == "uvicorn_worker.UvicornWorker"
    assert values[-1] == "config.asgi:application"


@pytest.mark.parametrize(
    ("runtime", "handler"),
    [
        ("pooled", "runtime.asgi.PooledExecutorASGIHandler"),
        ("stock", "django.core.handlers.asgi.ASGIHandler"),
    ],
)
def test_the_asgi_app_is_the_runtimes_handler(runtime, handler):
    script = (
        "from config.asgi import application, handler as h\n"
        "from runtime.lifespan import Lifespan\n"
        "assert isinstance(application, Lifespan) and application.handler is h\n"
        "print(f'{type(h).__module__}.{type(h).__qualname__}')\n"
    )
    result = in_app("-c", script, env={**os.environ, "SERVER_RUNTIME": runtime, "APP_ENV": "test"})
    assert result.stdout.split() == [handler]


@pytest.mark.parametrize(("value", "size"), [("", "64"), ("32", "32")])
def test_the_handlers_request_threads_per_worker_are_gunicorn_request_threads(value, size):
    script = "from config.asgi import handler\nprint(handler.executors.size)\n"
    env = {**os.environ, "GUNICORN_REQUEST_THREADS": value, "APP_ENV": "test"}
    assert in_app("-c", script, env=env).stdout.split() == [size]


@pytest.mark.parametrize("value", ["0", "-4"])
def test_no_request_threads_stops_gunicorn(value):
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_REQUEST_THREADS=value)
    assert f"GUNICORN_REQUEST_THREADS must be at least 1, got {value}" in excinfo.value.stderr


WHEN_READY = (
    "import logging, runpy, sys\n"
    "logging.basicConfig(stream=sys.stdout, format='%(message)s', level=logging.INFO)\n"
    "runpy.run_path('gunicorn.conf.py')['when_ready'](None)\n"
)


def test_the_master_says_the_request_threads_and_wait_in_effect():
    env = {**os.environ, "GUNICORN_PRELOAD": "false"}
    lines = in_app("-c", WHEN_READY, env={**env, "GUNICORN_REQUEST_THREADS": "12"}).stdout
    assert (
        "request threads: 12 per worker; a request that may write (not GET, HEAD or OPTIONS) "
        "waits up to 5s for one, then is answered 503" in lines
    )
    env["GUNICORN_PROFILE"] = "cpu"  # sync workers: no request threads to speak of
    assert "request threads" not in in_app("-c", WHEN_READY, env=env).stdout


@pytest.mark.parametrize("value", ["0", "-1.5", "nan", "inf"])
def test_no_wait_or_an_endless_one_for_a_request_thread_stops_gunicorn(value):
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_THREAD_WAIT_SECONDS=value)
    assert (
        f"GUNICORN_THREAD_WAIT_SECONDS must be a finite number above 0, got {value}"
        in excinfo.value.stderr
    )


@pytest.mark.parametrize(
    ("wait", "timeout"), [("6", "30"), ("60", "30"), ("5", "31"), ("5.0000001", "30")]
)
def test_a_wait_and_timeout_beyond_nginxs_read_timeout_stop_gunicorn(wait, timeout):
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_THREAD_WAIT_SECONDS=wait, GUNICORN_TIMEOUT=timeout)
    assert (
        f"GUNICORN_THREAD_WAIT_SECONDS ({wait}) plus GUNICORN_TIMEOUT ({timeout}) must not exceed "
        "Nginx's proxy_read_timeout (35 s)"
    ) in excinfo.value.stderr
    # Sync workers wait for no request thread: their timeout is Nginx's business alone.
    gunicorn_config(GUNICORN_THREAD_WAIT_SECONDS=wait, GUNICORN_PROFILE="cpu")


@pytest.mark.parametrize("timeout", ["0", "-5"])
def test_no_timeout_with_request_threads_stops_gunicorn(timeout):
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_TIMEOUT=timeout)
    assert (
        f"GUNICORN_TIMEOUT must be above 0 with request threads, got {timeout}: with no timeout"
    ) in excinfo.value.stderr
    # Sync workers: Gunicorn's own meaning of 0 (no timeout) stands.
    gunicorn_config(GUNICORN_TIMEOUT="0", GUNICORN_PROFILE="cpu")


def test_the_read_timeout_the_wait_is_held_to_is_nginxs():
    from runtime import config as runtime_config

    conf = (ROOT / "nginx/nginx.conf").read_text()
    assert re.findall(r"proxy_read_timeout (\d+)s;", conf) == [
        str(runtime_config.NGINX_READ_TIMEOUT)
    ]


def test_an_unknown_server_runtime_stops_gunicorn():
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(SERVER_RUNTIME="fast")
    assert "SERVER_RUNTIME must be one of pooled, stock" in excinfo.value.stderr


def test_a_warm_up_path_without_its_slash_stops_gunicorn():
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_PRELOAD_WARM_PATHS="/api/openapi.json,api/products")
    assert "GUNICORN_PRELOAD_WARM_PATHS: each path starts with /" in excinfo.value.stderr


def warm_up_paths(**env: str) -> list[str]:
    script = "from runtime import config; print(','.join(config.PRELOAD_WARM_PATHS))"
    environ = {k: v for k, v in os.environ.items() if k != "GUNICORN_PRELOAD_WARM_PATHS"}
    result = in_app("-c", script, env={**environ, **env})
    return [path for path in result.stdout.strip().split(",") if path]


@pytest.mark.parametrize(
    ("value", "paths"),
    [("", None), ("  ", None), ("none", []), ("NONE", []), (" /a , /b?x=1 ", ["/a", "/b?x=1"])],
)
def test_the_warm_up_paths_read_from_the_environment(value, paths):
    default = warm_up_paths()
    assert default[0] == "/api/openapi.json"
    assert warm_up_paths(GUNICORN_PRELOAD_WARM_PATHS=value) == (default if paths is None else paths)


def test_a_number_that_is_not_one_stops_gunicorn():
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_WORKERS="four", GUNICORN_DRAIN_SECONDS="5s")
    assert "GUNICORN_WORKERS must be a whole number, got 'four'" in excinfo.value.stderr
    assert "GUNICORN_DRAIN_SECONDS must be a number, got '5s'" in excinfo.value.stderr


def test_a_bad_gunicorn_setting_stops_only_gunicorn():
    """Every Django process imports runtime/config.py (the runtime's middleware): a Celery worker
    or a migration with a value only Gunicorn reads starts, with that setting's default."""
    bad = {
        "GUNICORN_PRELOAD_WARM_PATHS": "api/products",
        "GUNICORN_PROFILE": "turbo",
        "SERVER_RUNTIME": "fast",
        "GUNICORN_WORKERS": "four",
    }
    result = in_app("manage.py", "check", env={**os.environ, **bad}, check=False)
    assert result.returncode == 0, result.stderr
    script = (
        "from runtime import config\n"
        "print(len(config.INVALID), config.PROFILE, config.SERVER_RUNTIME, config.WORKERS,\n"
        "      config.PRELOAD_WARM_PATHS)"
    )
    read = in_app("-c", script, env={**os.environ, **bad})
    assert read.stdout.split() == ["4", "io", "pooled", str(CORES), "()"]


def test_an_unknown_profile_stops_gunicorn():
    with pytest.raises(subprocess.CalledProcessError) as excinfo:
        gunicorn_config(GUNICORN_PROFILE="turbo")
    assert "GUNICORN_PROFILE must be one of" in excinfo.value.stderr


def test_gunicorns_own_asgi_worker_gets_the_asgi_app():
    values = gunicorn_config(GUNICORN_WORKER_CLASS="asgi")
    assert values[0] == "asgi"
    assert values[-1] == "config.asgi:application"


def test_workers_boot_without_preload(tmp_path):
    """post_fork must not touch Django when preload is off (Django loads after the fork)."""
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('conf', 'gunicorn.conf.py')\n"
        "conf = importlib.util.module_from_spec(spec); spec.loader.exec_module(conf)\n"
        "assert conf.preload_app is False\n"
        "import types\n"
        "conf.post_fork(None, types.SimpleNamespace(pid=1, cfg=None, log=None))\n"
        "print('booted')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = in_app("-c", script, env={**env, "GUNICORN_PRELOAD": "false"}, check=False)
    assert "booted" in result.stdout, result.stderr


def test_a_master_left_with_a_stuck_warm_up_thread_still_exits():
    """config/preload.py may leave a request thread stuck in the master (code waiting outside
    the database): concurrent.futures joins its threads at interpreter exit, so without
    gunicorn.conf.py's on_exit the master would wait for it, and a stop end in SIGKILL."""
    script = (
        "import runpy, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from config import preload\n"
        "stuck = ThreadPoolExecutor(max_workers=1)\n"
        "stuck.submit(time.sleep, 60)\n"
        "preload._left_behind.extend(stuck._threads)\n"
        "runpy.run_path('gunicorn.conf.py')['on_exit'](None)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_PRELOAD")}
    started = time.monotonic()
    result = in_app("-c", script, env=environ, check=False)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    assert "exiting with a warm-up request thread still stuck" in result.stdout + result.stderr
