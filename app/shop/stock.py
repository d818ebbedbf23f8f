"""Live stock counts in Redis, written after each committed stock change and read by the product
page.

Redis holds a copy, the database the truth: any Redis failure falls back to the database value.
The copy lives in the cache instance (settings.CACHES["default"]): evicted, it is a miss.

Staleness is bounded by STOCK_CACHE_TTL seconds. Each copy carries the row's stock_version
(raised under the row lock with every change) and Redis keeps only the highest one, so hooks
of concurrent transactions that run out of commit order never put an older count back. Every
write sets the TTL, so a write lost to a Redis failure leaves the previous count, served at
most STOCK_CACHE_TTL seconds after it was written; the page then reads the database row.
"""

import logging

from django.conf import settings
from django_redis import get_redis_connection

from shop.redis import clients

log = logging.getLogger(__name__)


def _key(product_id: int) -> str:
    # A hash {v: stock_version, n: stock}; the "stock:<id>" strings of old releases, which
    # never expired, are simply no longer read.
    return f"stock:v:{product_id}"


# KEYS[1]: the key; ARGV: version, stock, TTL in ms. Writes only a newer version than held.
_SET_IF_NEWER = """
local held = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if tonumber(ARGV[1]) <= held then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'n', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def stock_cache_set(*, stocks: dict[int, tuple[int, int]]) -> None:
    """Caches {product_id: (stock_version, stock)}, each only if newer than the copy held."""
    ttl_ms = int(settings.STOCK_CACHE_TTL * 1000)
    try:
        client = get_redis_connection("default")
        script = client.register_script(_SET_IF_NEWER)
        pipe = client.pipeline(transaction=False)
        for pid, (version, n) in stocks.items():
            script(keys=[_key(pid)], args=[version, n, ttl_ms], client=pipe)
        pipe.execute()
    except Exception:
        log.warning("stock not cached; Redis unavailable", exc_info=True)


async def stock_cache_get(*, product_id: int) -> int | None:
    try:
        async with clients.use() as client:
            value = await client.hget(_key(product_id), "n")
    except Exception:
        log.warning("stock read from Redis failed", exc_info=True)
        return None
    return int(value) if value is not None else None
