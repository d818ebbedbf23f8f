"""Django tests against real Postgres and Redis, started by testcontainers from our own images.

The replica alias mirrors the primary here (Django's TEST MIRROR); the compose suite proves the
real replica. Containers start only when a test asks for the database or the cache.
"""

import copy
import json
import secrets
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from testcontainers.core.container import DockerContainer

from tests.support import container_health, image, wait_until

DB_PASSWORD = secrets.token_urlsafe(16)
REDIS_PASSWORD = secrets.token_urlsafe(16)
REDIS_CACHE_PASSWORD = secrets.token_urlsafe(16)


def _start(container: DockerContainer) -> DockerContainer:
    container.start()
    cid = container.get_wrapped_container().id
    wait_until(lambda: container_health(cid) == "healthy", timeout=120, what=f"{cid[:12]} healthy")
    return container


@pytest.fixture(scope="session")
def postgres_container() -> Iterator[DockerContainer]:
    container = (
        DockerContainer(image("postgres"))
        .with_env("PG_ROLE", "primary")
        .with_env("DB_NAME", "app")
        .with_env("DB_USER", "app")
        .with_env("DB_PASSWORD", DB_PASSWORD)
        .with_env("REPLICATION_PASSWORD", secrets.token_urlsafe(16))
        .with_exposed_ports(5432)
    )
    _start(container)
    # The app role may not create databases in production; the test runner must create one,
    # from a connection to the maintenance database.
    for sql in ("ALTER ROLE app CREATEDB", "GRANT CONNECT ON DATABASE postgres TO app"):
        container.exec(["psql", "-U", "postgres", "-c", sql])
    yield container
    container.stop()


# The cache instance's arguments in docker-compose.yml (service redis-cache).
CACHE_ARGS = ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--appendonly", "no")


@pytest.fixture(scope="session")
def redis_container() -> Iterator[DockerContainer]:
    """The broker instance: Celery, the "state" cache (db 3)."""
    container = (
        DockerContainer(image("redis"))
        .with_env("REDIS_PASSWORD", REDIS_PASSWORD)
        .with_exposed_ports(6379)
    )
    _start(container)
    yield container
    container.stop()


@pytest.fixture(scope="session")
def redis_cache_container() -> Iterator[DockerContainer]:
    """The cache instance: the "default" cache (db 2), evicting its least recently used keys."""
    container = (
        DockerContainer(image("redis"))
        .with_env("REDIS_PASSWORD", REDIS_CACHE_PASSWORD)
        .with_command(" ".join(CACHE_ARGS))
        .with_exposed_ports(6379)
    )
    _start(container)
    yield container
    container.stop()


@pytest.fixture(scope="session")
def mailcatcher_container() -> Iterator[DockerContainer]:
    """The project's mail catcher: a real SMTP server (1025) and its HTTP API (8025)."""
    container = DockerContainer(image("mailcatcher")).with_exposed_ports(1025, 8025)
    _start(container)
    yield container
    container.stop()


class MailCatcher:
    def __init__(self, container: DockerContainer) -> None:
        host = container.get_container_host_ip()
        self.smtp = host, int(container.get_exposed_port(1025))
        self.base = f"http://{host}:{container.get_exposed_port(8025)}"
        self.api = self.base + "/messages"

    def _read(self, path: str) -> list[Any]:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:  # noqa: S310 - the test's
            return list(json.loads(response.read()))

    def messages(self) -> list[dict[str, Any]]:
        return self._read("/messages")

    def quits(self) -> list[str]:
        """The connections (peers) that ended with QUIT."""
        return self._read("/quits")

    def clear(self) -> None:
        request = urllib.request.Request(self.api, method="DELETE")  # noqa: S310 - the test's
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310


@pytest.fixture
def smtp_server(settings, mailcatcher_container: DockerContainer) -> Iterator[MailCatcher]:  # type: ignore[no-untyped-def]
    """The real SMTP backend pointed at the mail catcher, emptied; this process's kept SMTP
    connection (notifications.relay) closed before and after."""
    from notifications.relay import relay_close

    catcher = MailCatcher(mailcatcher_container)
    catcher.clear()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = catcher.smtp
    relay_close()
    yield catcher
    relay_close()


def _address(container: DockerContainer) -> tuple[str, int]:
    return container.get_container_host_ip(), int(container.get_exposed_port(6379))


@pytest.fixture(scope="session", autouse=True)
def _checks_reach_postgres_directly() -> None:
    """No PgBouncer here, so no check databases (settings.DATABASE_CHECK_SUFFIX): the checks
    connect to the test database itself. pytest-django loaded the settings before any conftest
    could set DB_CHECK_SUFFIX for them."""
    settings.DATABASE_CHECK_SUFFIX = ""


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgres_container: DockerContainer) -> None:
    host = postgres_container.get_container_host_ip()
    port = int(postgres_container.get_exposed_port(5432))
    for alias in settings.DATABASES:
        settings.DATABASES[alias].update({"HOST": host, "PORT": port, "PASSWORD": DB_PASSWORD})


@pytest.fixture(autouse=True)
def _databases_unchanged() -> Iterator[None]:
    """No test leaves DATABASES changed: pytest-django's `settings` fixture undoes assignments,
    not changes made inside the dict, and a stale PORT there breaks every later connection."""
    before = copy.deepcopy(settings.DATABASES)
    yield
    assert before == settings.DATABASES, "DATABASES changed in place: undo it in the test"


@pytest.fixture
def redis_settings(  # type: ignore[no-untyped-def]
    settings, redis_container: DockerContainer, redis_cache_container: DockerContainer
):
    """Points the caches and the readiness check at the test Redis instances, as in compose:
    "default" at the cache instance, "state" at the broker instance."""
    host, port = _address(redis_container)
    settings.REDIS_HOST, settings.REDIS_PORT, settings.REDIS_PASSWORD = host, port, REDIS_PASSWORD
    cache_host, cache_port = _address(redis_cache_container)
    settings.REDIS_CACHE_HOST, settings.REDIS_CACHE_PORT = cache_host, cache_port
    settings.REDIS_CACHE_PASSWORD = REDIS_CACHE_PASSWORD
    locations = {
        "default": f"redis://:{REDIS_CACHE_PASSWORD}@{cache_host}:{cache_port}/2",
        "state": f"redis://:{REDIS_PASSWORD}@{host}:{port}/3",
    }
    settings.CACHES = {
        alias: {**config, "LOCATION": locations[alias]} for alias, config in settings.CACHES.items()
    }
    from django.core.cache import caches

    caches["default"].clear()
    caches["state"].clear()
    return settings


@pytest.fixture
def redis_client(redis_cache_container: DockerContainer) -> Iterator[Any]:
    """A plain client of the test cache instance (db 2), to look at what the app did there."""
    import redis

    host, port = _address(redis_cache_container)
    client = redis.Redis(host=host, port=port, password=REDIS_CACHE_PASSWORD, db=2)
    yield client
    client.close()


@pytest.fixture
def state_client(redis_container: DockerContainer) -> Iterator[Any]:
    """A plain client of the broker instance's "state" db (3)."""
    import redis

    host, port = _address(redis_container)
    client = redis.Redis(host=host, port=port, password=REDIS_PASSWORD, db=3)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _no_retry_left_over() -> None:
    """Each test starts with no Redis write of an earlier one pending (core.retry): a product
    written in a test without the test Redis leaves its bump failing for the cache's TTL."""
    from core.retry import retries_cancel

    retries_cancel()


@pytest.fixture(autouse=True)
def _replica_down_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without this process's copy of the replica-down marks (core.db), and
    with every replica alias found serving: here each mirrors the primary, which the real check
    rightly finds no standby, so no checker thread runs (tests/app/core/test_db_replicas.py
    runs the check itself; the stack suite runs it against real standbys)."""
    from core import db, selectors

    db.replica_down_forget()
    monkeypatch.setattr(db, "replica_checkers_start", lambda: None)
    monkeypatch.setattr(selectors, "replica_checkers_start", lambda: None)
    serving = db.ReplicaHealth(True, "ok", 0.0, float("inf"))
    monkeypatch.setattr(db, "_health", dict.fromkeys(settings.DATABASES, serving))
    monkeypatch.setattr(db, "_primary", None)
    monkeypatch.setattr(db, "_primary_system_id", None)


@pytest.fixture
def replica_checks_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Starts this process's real checks of the primary and each replica alias, and the
    watchdog, as a worker runs them (core.db.replica_checkers_start), until the test ends; it
    returns once each replica was checked."""
    from core import db
    from core.db_router import PRIMARY, replica_aliases

    stopping = threading.Event()
    monkeypatch.setattr(db, "_checkers_stopping", stopping)
    threads: list[threading.Thread] = []

    def started(target: Any, *args: str) -> None:
        threads.append(threading.Thread(target=target, args=args, daemon=True))
        threads[-1].start()

    def start(*, primary_answers: bool = True) -> None:
        monkeypatch.setattr(db, "_health", {})
        # The primary first, as in a worker that has run a while: a replica is judged by it.
        started(db._checker_run, PRIMARY)
        if primary_answers:
            wait_until(lambda: db._primary, timeout=30, what="the primary checked")
        for alias in replica_aliases():
            started(db._checker_run, alias)
        started(db._watchdog_run)
        wait_until(
            lambda: all(alias in db._health for alias in replica_aliases()),
            timeout=30,
            what="each replica checked",
        )

    yield start
    stopping.set()
    for thread in threads:
        thread.join(5)


@pytest.fixture
def replica_checks(replica_checks_start: Any) -> None:
    replica_checks_start()


@pytest.fixture
def plain_static(settings):  # type: ignore[no-untyped-def]
    """Pages that render {% static %} (the admin's): the plain storage, since no collectstatic
    manifest exists here."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def superuser_client(client, plain_static):  # type: ignore[no-untyped-def]
    """The test client logged in as a superuser, for the admin's pages."""
    from tests.app.accounts.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@contextmanager
def _broker(url: str) -> Iterator[None]:
    """Celery publishes to `url` meanwhile."""
    from config.celery import app

    def point_at(url: str) -> None:
        app.conf.broker_url = url
        # The producer pools are keyed by the connection they were made for: drop them.
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    point_at(url)
    try:
        yield
    finally:
        point_at(previous)


@pytest.fixture
def celery_broker(redis_container: DockerContainer) -> Iterator[Any]:
    """Celery publishes to the test Redis (db 0, emptied first); yields a client of that db to
    look into the queues (a Redis list per queue name)."""
    import redis

    host = redis_container.get_container_host_ip()
    port = int(redis_container.get_exposed_port(6379))
    client = redis.Redis(host=host, port=port, password=REDIS_PASSWORD, db=0)
    client.flushdb()
    with _broker(f"redis://:{REDIS_PASSWORD}@{host}:{port}/0"):
        yield client
    client.close()


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def broker_down(closed_port: int) -> Iterator[None]:
    """Celery publishes to a port that refuses connections: every enqueue fails at once."""
    with _broker(f"redis://:x@127.0.0.1:{closed_port}/0"):
        yield


class CountingServer:
    """A local port that accepts each connection and never answers, counting them: how often a
    client tried (once, or its library's retries). Held open, it is a hung Redis (or database);
    closed at once, a Redis (or broker) that is up at TCP and answers nothing."""

    def __init__(self, *, hold: bool) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.hold = hold
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def connections(self) -> int:
        return len(self.accepted)

    def _accept(self) -> None:
        while True:
            try:
                conn = self.server.accept()[0]
            except OSError:
                return
            self.accepted.append(conn)
            if not self.hold:
                conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


class Blackhole(CountingServer):
    def __init__(self) -> None:
        super().__init__(hold=True)


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    try:
        yield hole
    finally:
        hole.close()


def cache_at(settings: Any, port: int) -> None:
    """Points the cache instance, Django's "default" cache and the event loop's client alike,
    at a local port (`settings`: pytest-django's fixture, which undoes it)."""
    settings.REDIS_CACHE_HOST, settings.REDIS_CACHE_PORT = "127.0.0.1", port
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/2"},
    }


class DroppingServer(CountingServer):
    def __init__(self) -> None:
        super().__init__(hold=False)


@pytest.fixture
def dropping_server() -> Iterator[DroppingServer]:
    server = DroppingServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def broker_dropping(dropping_server: DroppingServer) -> Iterator[DroppingServer]:
    """Celery publishes to a broker that drops every connection (DroppingServer)."""
    with _broker(f"redis://:x@127.0.0.1:{dropping_server.port}/0"):
        yield dropping_server
