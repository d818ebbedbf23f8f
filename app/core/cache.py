"""django-redis with timings: every cache call observed in core.metrics, by operation.

The settings' CACHES use this backend instead of django_redis.cache.RedisCache; it behaves the
same (IGNORE_EXCEPTIONS and all) and adds one histogram observation per call, plus a hit or miss
count for reads. get_or_set and the async a* methods of Django's BaseCache call these methods,
so they are timed too.
"""

import functools
from collections.abc import Callable
from typing import Any

from django_redis.cache import CONNECTION_INTERRUPTED, RedisCache
from django_redis.pool import ConnectionFactory

from core import metrics

_MISS = object()


class SharedClientConnectionFactory(ConnectionFactory):  # type: ignore[misc]
    """One redis-py client per Redis URL and process. Django makes a cache backend per request
    context, and django-redis a new client for each: Redis.__init__ (it copies every response
    callback) showed up in a web worker's profile of the cached product list (make profile).
    redis-py clients are thread-safe, and django-redis already shares the connection
    pool per URL; after a fork the pool notices the new PID and opens fresh connections."""

    _clients: dict[tuple[str, str, str], Any] = {}

    def connect(self, url: str) -> Any:
        key = (url, self.redis_client_cls.__qualname__, repr(self.redis_client_cls_kwargs))
        client = self._clients.get(key)
        if client is None:  # two threads may both build one: the last stored wins, both work
            client = self._clients[key] = super().connect(url)
        return client


def _timed(name: str) -> Callable[..., Any]:
    parent: Callable[..., Any] = getattr(RedisCache, name)

    @functools.wraps(parent)
    def method(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
        with metrics.cache_call(name):
            return parent(self, *args, **kwargs)

    return method


class InstrumentedRedisCache(RedisCache):  # type: ignore[misc]  # django-redis ships no types
    def get(self, key: Any, default: Any = None, version: Any = None, client: Any = None) -> Any:
        with metrics.cache_call("get"):
            value = self._get(key, _MISS, version, client)
        if value is _MISS or value is CONNECTION_INTERRUPTED:
            metrics.count_cache_get(hit=False)
            return default
        metrics.count_cache_get(hit=True)
        return value

    set = _timed("set")
    add = _timed("add")
    delete = _timed("delete")
    get_many = _timed("get_many")
    set_many = _timed("set_many")
    delete_many = _timed("delete_many")
    has_key = _timed("has_key")
    incr = _timed("incr")
    decr = _timed("decr")
    touch = _timed("touch")
    expire = _timed("expire")
    ttl = _timed("ttl")
    persist = _timed("persist")
    delete_pattern = _timed("delete_pattern")
    clear = _timed("clear")
