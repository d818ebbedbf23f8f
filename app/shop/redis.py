"""The event loop's client of the cache instance: the async reads on the request path (the
product page's stock, a cached product page) go through it, one pool per loop (core.aio)."""

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.aio import PerLoop


def _client() -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool(
        host=settings.REDIS_CACHE_HOST,
        port=settings.REDIS_CACHE_PORT,
        password=settings.REDIS_CACHE_PASSWORD,
        db=settings.REDIS_CACHE_DB,
        socket_timeout=settings.SHOP_REDIS_TIMEOUT,
        socket_connect_timeout=settings.SHOP_REDIS_TIMEOUT,
        # redis-py retries a failed command ten times with backoff by default: seconds of a
        # page while Redis is down. The callers' fallback (the database) is the retry.
        retry=Retry(NoBackoff(), 0),
        # The settings' cap per process; past it a page waits briefly for a free connection.
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=settings.SHOP_REDIS_TIMEOUT,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


async def _close(client: aioredis.Redis) -> None:
    await client.aclose()


clients: PerLoop[aioredis.Redis] = PerLoop(_client, _close)
