"""Live stock counts in Redis, written after each committed order and read by the product page.

Redis holds a copy, the database the truth: any Redis failure falls back to the database value.
"""

import logging

import redis.asyncio as aioredis
from django.conf import settings
from django_redis import get_redis_connection

from core.aio import PerLoop

log = logging.getLogger(__name__)


def _key(product_id: int) -> str:
    return f"stock:{product_id}"


def stock_cache_set(*, stocks: dict[int, int]) -> None:
    try:
        get_redis_connection("default").mset({_key(pid): n for pid, n in stocks.items()})
    except Exception:
        log.warning("stock not cached; Redis unavailable", exc_info=True)


def _client() -> aioredis.Redis:
    return aioredis.Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        password=settings.REDIS_PASSWORD,
        db=2,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )


async def _close(client: aioredis.Redis) -> None:
    await client.aclose()


clients: PerLoop[aioredis.Redis] = PerLoop(_client, _close)


async def stock_cache_get(*, product_id: int) -> int | None:
    try:
        async with clients.use() as client:
            value = await client.get(_key(product_id))
    except Exception:
        log.warning("stock read from Redis failed", exc_info=True)
        return None
    return int(value) if value is not None else None
