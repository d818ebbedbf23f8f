"""core.cache: one redis-py client per process, whatever number of cache backends Django makes
(one per request context)."""

import contextvars
from typing import Any

from django.core.cache import caches


def _backend_and_client() -> tuple[Any, Any]:
    backend = caches["default"]
    return backend, backend.client.get_client(write=True)


def test_each_request_context_gets_its_own_backend_but_the_same_redis_client(redis_settings):
    # Django's cache handler is context-local: a fresh context is what a new request gets.
    first = contextvars.Context().run(_backend_and_client)
    second = contextvars.Context().run(_backend_and_client)
    assert first[0] is not second[0]
    assert first[1] is second[1]
    first[0].set("shared-client", "yes")
    assert second[0].get("shared-client") == "yes"


def test_a_process_holds_at_most_its_cap_of_connections_to_redis(redis_settings, redis_client):
    """The settings' pool (REDIS_MAX_CONNECTIONS): more concurrent callers than the cap share
    the capped connections, waiting for one, instead of opening more or failing."""
    import copy
    import threading

    cap, callers = 2, 6
    config = copy.deepcopy(redis_settings.CACHES["default"])
    # Its own database: django-redis keeps one pool per address, made on first use.
    config["LOCATION"] = config["LOCATION"].rsplit("/", 1)[0] + "/7"
    config["OPTIONS"]["CONNECTION_POOL_KWARGS"]["max_connections"] = cap
    config["OPTIONS"]["IGNORE_EXCEPTIONS"] = False
    redis_settings.CACHES = {**redis_settings.CACHES, "capped": config}
    client = caches["capped"].client.get_client(write=True)

    errors: list[BaseException] = []
    start = threading.Barrier(callers)

    def call() -> None:
        try:
            start.wait()
            client.blpop(["capped-empty-list"], timeout=0.2)  # holds its connection meanwhile
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    seen: list[int] = []
    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        seen.append(sum(1 for c in redis_client.client_list() if c["db"] == "7"))
    for t in threads:
        t.join()
    assert errors == []
    assert 0 < max(seen) <= cap
