"""Live stock counts in Redis, written after each committed stock change and read by the product
page.

Redis holds a copy, the database the truth: any Redis failure falls back to the database value.
The copy lives in the cache instance (settings.CACHES["default"]): evicted, it is a miss.

Staleness is bounded by STOCK_CACHE_TTL seconds. Each copy carries the row's stock_version
(raised under the row lock with every change) and Redis keeps only the highest one, so hooks
of concurrent transactions that run out of commit order never put an older count back. A write
lost to a Redis failure is retried in the background until it lands (core.retry); meanwhile the
process that lost it reads the row. Every write sets the TTL, so another process serves the
previous count at most until Redis answers again and the retry's next attempt lands, and never
past STOCK_CACHE_TTL seconds after it was written; the page then reads the database row.
"""

import logging
import threading

from django.conf import settings
from django_redis import get_redis_connection

from core import metrics
from core.logging import ThrottledWarning
from core.resp import ErrorReply
from core.retry import RetryInBackground, retries_pending
from shop.models import MAX_STOCK
from shop.redis import clients

log = logging.getLogger(__name__)
# Once per request, an outage (or a copy set by hand) would flood the log.
_read_failed = ThrottledWarning(log)
_not_a_count = ThrottledWarning(log)


_DIGITS = len(str(MAX_STOCK))


def _key(product_id: int) -> str:
    # A hash {v: stock_version, n: stock}; the "stock:<id>" strings of old releases, which
    # never expired, are simply no longer read.
    return f"stock:v:{product_id}"


# KEYS: one key a product; ARGV: its version and stock, pair after pair, then the TTL in ms.
# Each product's copy is written only if newer than the one held. A copy this script did not
# write (another type, a version or a count that is not a whole number, no expiry: every write
# here sets one) is replaced whatever its version: otherwise no write could ever repair it, and
# one planted with a huge version would be served forever. One script for every product: one
# round trip (a pipeline of scripts costs a SCRIPT EXISTS round trip before it).
_SET_IF_NEWER = """
local ttl = ARGV[#ARGV]
for i, key in ipairs(KEYS) do
  local new, count = ARGV[2 * i - 1], ARGV[2 * i]
  local held = redis.pcall('HMGET', key, 'v', 'n')
  if held.err then
    redis.call('DEL', key)
    held = {}
  end
  local version = tonumber(held[1]) or -1
  if not (held[2] and string.match(held[2], '^%d+$')) then version = -1 end
  if redis.call('PTTL', key) == -1 then version = -1 end
  if tonumber(new) > version then
    redis.call('HSET', key, 'v', new, 'n', count)
    redis.call('PEXPIRE', key, ttl)
  end
end
"""


def stock_cache_set(*, stocks: dict[int, tuple[int, int]]) -> None:
    """Caches {product_id: (stock_version, stock)}, each only if newer than the copy held.
    Runs after the commit, so it never raises: a failed write is retried in the background."""
    # While a write to this Redis is pending it is known to fail: the retry writes these too,
    # at once, and this request does not wait out the client's timeout.
    known_failing = retries_pending()
    if known_failing or not _write(stocks):
        _pending_add(stocks)
        _stock_retry.later(tried=not known_failing)


def _write(stocks: dict[int, tuple[int, int]], *, retry: bool = False) -> bool:
    ttl_ms = int(settings.STOCK_CACHE_TTL * 1000)
    try:
        with metrics.cache_call("set"):
            client = get_redis_connection("default")
            client.register_script(_SET_IF_NEWER)(
                keys=[_key(pid) for pid in stocks],
                args=[*(x for pair in stocks.values() for x in pair), ttl_ms],
            )
    except Exception:
        if not retry:  # once per failure, not every retry
            log.warning("stock not cached yet; Redis unavailable", exc_info=True)
        return False
    return True


# The counts whose write failed, newest version per product: a retry writes them all, and a
# copy newer than one of them, written meanwhile, is kept (_SET_IF_NEWER).
_pending: dict[int, tuple[int, int]] = {}
_pending_lock = threading.Lock()


def _pending_add(stocks: dict[int, tuple[int, int]]) -> None:
    with _pending_lock:
        for pid, (version, n) in stocks.items():
            if pid not in _pending or _pending[pid][0] < version:
                _pending[pid] = (version, n)


def _pending_write() -> bool:
    global _pending
    with _pending_lock:
        stocks, _pending = _pending, {}
    if not stocks or _write(stocks, retry=True):
        return True
    _pending_add(stocks)
    return False


_stock_retry = RetryInBackground(
    "stock-cache-set",
    _pending_write,
    within=lambda: settings.STOCK_CACHE_TTL,
)


async def stock_cache_get(*, product_id: int) -> int | None:
    """The cached count; None (the database answers) when Redis fails or holds anything but a
    count: the cache is a copy, never trusted over the row."""
    if _stock_retry.pending:
        # A count of this process's has not landed: Redis may hold an older one than the row.
        metrics.count_cache_get(hit=False)
        return None
    try:
        with metrics.cache_call("get"):
            async with clients.use() as client:
                value = await client.execute(b"HGET", _key(product_id), b"n")
    except ErrorReply:  # a copy of another type (WRONGTYPE): Redis itself answers
        _copy_ignored(product_id)
        return None
    except Exception:
        _read_failed.warning("stock read from Redis failed")
        metrics.count_cache_get(hit=False)  # the row answers, as the cache backend counts it
        return None
    if value is None:  # no copy
        metrics.count_cache_get(hit=False)
        return None
    # A count a row can hold (a longer one was not written from a row; int() refuses a string
    # of thousands of digits).
    if isinstance(value, bytes) and value.isdigit() and len(value) <= _DIGITS:
        count = int(value)
        if count <= MAX_STOCK:
            metrics.count_cache_get(hit=True)
            return count
    _copy_ignored(product_id)
    return None


def _copy_ignored(product_id: int) -> None:
    metrics.count_cache_get(hit=False)  # the row answers, as for no copy
    _not_a_count.warning(
        f"stock copy of product {product_id} is not a count: ignored", exc_info=False
    )
