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
