"""The cached product list (GET /api/products): the cached read, its keys, the version every
page is stored with, and the invalidation product writes call (shop/services.py)."""

import logging
import time
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection
from ninja.renderers import JSONRenderer

from core import metrics
from core.logging import ThrottledWarning
from core.retry import RetryInBackground, retries_pending
from core.schemas import MAX_PAGE, PAGE_SIZES
from runtime import edge
from runtime.edge import EdgeRoute
from shop import selectors
from shop.redis import clients
from shop.schemas import ProductPage

log = logging.getLogger(__name__)
# Once per request, an outage would log a traceback for every page asked for.
_read_failed = ThrottledWarning(log)
_version_failed = ThrottledWarning(log)
_store_failed = ThrottledWarning(log)

# Both keys live in the cache instance, which evicts when full. A version evicted starts again
# from the clock (_VERSION_START), never from a value old pages were stored with; a mark
# evicted lets a lagging replica's page be cached at most until its CACHE_TTL runs out.
PRODUCTS_VERSION_KEY = "products:version"
# Present for READ_YOUR_WRITES_SECONDS after a product write: a page missed meanwhile is filled
# from the primary, since the replica may not have replayed the write yet (_page_fill).
PRODUCTS_WRITTEN_KEY = "products:written"
# The API's own renderer (ninja's default JSON, with its encoder): a hit answers the very bytes
# the view would have rendered.
_RENDERER = JSONRenderer()
CONTENT_TYPE = f"{_RENDERER.media_type}; charset={_RENDERER.charset}"


# A version as this module writes it, a whole number without leading zeros, so the page stored
# with it carries the very bytes the next read compares: the rule in Lua, for `held` in the
# scripts below (_is_version is the same in Python).
_LUA_IS_VERSION = "type(held) == 'string' and string.match(held, '^[1-9]%d*$')"

# KEYS: the version, the write mark; ARGV: a fresh version (the clock), the mark's TTL. Marks,
# then bumps: a version that is missing or not a whole number (evicted, overwritten by hand) is
# replaced by the clock's, which no page was stored with.
_BUMP = f"""
redis.call('SET', KEYS[2], 1, 'EX', ARGV[2])
local held = redis.pcall('GET', KEYS[1])
if {_LUA_IS_VERSION} then
  local bumped = redis.pcall('INCR', KEYS[1])
  if type(bumped) == 'number' then return bumped end
end
redis.call('SET', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
"""


def product_list_invalidate() -> None:
    """Every cached product page is stored with the version: bumping it makes them all stale
    at once. Runs after the write committed, so it never raises: a failed bump is retried in
    the background until it lands or every page stored before it has expired."""
    # While a write to this Redis is pending it is known to fail: the retry's bump, after this
    # commit too, does for this one, at once, and this request does not wait out the client's
    # timeout. At once: until it lands, a miss in another process may fill from a replica that
    # has not replayed this write yet (no write mark) and store it under the current version.
    known_failing = retries_pending()
    if known_failing or not _bump():
        _invalidation.later(tried=not known_failing)


def _bump(*, retry: bool = False) -> bool:
    try:
        client = get_redis_connection("default")
        client.eval(
            _BUMP,
            2,
            cache.make_key(PRODUCTS_VERSION_KEY),
            cache.make_key(PRODUCTS_WRITTEN_KEY),
            time.time_ns(),
            settings.READ_YOUR_WRITES_SECONDS,
        )
    except Exception:
        if not retry:  # once per failure, not every retry
            log.warning("product list not invalidated yet; Redis unavailable", exc_info=True)
        return False
    return True


_invalidation = RetryInBackground(
    "products-invalidate",
    lambda: _bump(retry=True),
    # As long as a page stored before the bump may live (None: pages never expire, nor does
    # the retry).
    within=lambda: cache.default_timeout,
)


# KEYS: the version; ARGV: the clock. A version missing or not a whole number (evicted, a new
# Redis, set by hand) starts again from the clock in nanoseconds: far above any count of bumps
# since the last start, so no page stored with an earlier version is ever answered again. A
# whole number is kept: another miss may have started it first. Returns the version held after.
_VERSION_START = f"""
local held = redis.pcall('GET', KEYS[1])
if {_LUA_IS_VERSION} then return held end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


async def _version_start() -> bytes | None:
    """The version a missed page is stored with when the read found none it could use; None
    when Redis cannot say (the page is then not stored). On the event loop's client: a stalled
    Redis costs the miss at most SHOP_REDIS_TIMEOUT more."""
    try:
        async with clients.use() as client:
            held = await client.execute(
                b"EVAL", _VERSION_START, 1, cache.make_key(PRODUCTS_VERSION_KEY), time.time_ns()
            )
    except Exception:
        _version_failed.warning("product list version unread; Redis unavailable")
        held = None
    return held if isinstance(held, bytes) and _is_version(held) else None


def _is_version(held: bytes | None) -> TypeGuard[bytes]:
    """A version as this module writes it (_LUA_IS_VERSION, the scripts' rule)."""
    return held is not None and held.isdigit() and not held.startswith(b"0")


def product_page_key(*, hot: bool | None, page: int, page_size: int) -> str:
    """The page's key in the cache instance, with the cache's prefix (as Django's cache would
    name it): its value is b"<version>\\n" and the rendered JSON."""
    return str(cache.make_key(f"products:hot={hot}:p={page}:s={page_size}"))


async def product_page_aget(*, page: int, page_size: int, hot: bool | None = None) -> bytes:
    """A page of the catalogue as GET /api/products answers it: the JSON bytes, cached in Redis
    until the TTL or the next product write.

    A hit is one round trip on the event loop (the version, the page and the write mark in one
    MGET) and the stored bytes as they are: no thread, model, validation or rendering; a miss
    adds the query and one SET (and one EVAL first when no version is held). A page stored
    with another version than the current one is a miss. Redis failing or slow
    (SHOP_REDIS_TIMEOUT) is a miss too: the database answers.
    """
    key = product_page_key(hot=hot, page=page, page_size=page_size)
    if _invalidation.pending:
        # A write of this process committed and its bump has not landed: every page in Redis
        # may hold the rows from before it. The primary answers, nothing is stored, until then;
        # a miss, as a stock read skipped for its pending write is (shop.stock).
        metrics.count_cache_get(hit=False)
        held, written, use_cache = None, True, False
    else:
        read = edge.handed()  # the edge's read of this page, when it missed
        if not isinstance(read, _PageRead) or read.key != key:
            read = await _page_read(key)
        if read.body is not None:
            return read.body
        metrics.count_cache_get(hit=False)
        held, written, use_cache = read.version, read.written, read.answered
    # Redis that just failed is not asked again: each call would wait out its own timeout. The
    # version is the one held before the query: a write that commits meanwhile bumps it, and
    # the page stored with it is stale at once rather than for its TTL.
    if use_cache and not _is_version(held):
        held = await _version_start()
    # The request's thread: the ORM is sync (core.db's read and its replica fallback).
    body = await sync_to_async(_page_fill)(page=page, page_size=page_size, hot=hot, written=written)
    if use_cache and held is not None:
        await _page_store(key, held + b"\n" + body)
    return body


async def product_page_hit(
    *, page: int, page_size: int, hot: bool | None
) -> "bytes | _PageRead | None":
    """The cached page: runtime.edge's read of GET /api/products, before Django. On a miss, the
    read, which the edge hands to the view (product_page_aget): a second read would wait out a
    hung Redis's timeout twice. A miss is counted by the view that answers it."""
    if _invalidation.pending:
        return None
    read = await _page_read(product_page_key(hot=hot, page=page, page_size=page_size))
    return read.body if read.body is not None else read


@dataclass(frozen=True)
class _PageRead:
    key: str
    body: bytes | None  # a hit
    version: bytes | None  # the version held now, which a miss stores its page with
    written: bool  # a product write happened lately: the primary fills a miss
    answered: bool  # Redis answered


async def _page_read(key: str) -> _PageRead:
    """One MGET of the version, the page and the write mark; a hit is counted."""
    try:
        with metrics.cache_call("get_many"):
            async with clients.use() as client:
                # The write mark rides along: a miss needs no round trip of its own to choose
                # the database, and reads it in the same instant as the version.
                reply = await client.execute(
                    b"MGET",
                    cache.make_key(PRODUCTS_VERSION_KEY),
                    key,
                    cache.make_key(PRODUCTS_WRITTEN_KEY),
                )
        version, stored, mark = cast(list[bytes | None], reply)
    except Exception:
        _read_failed.warning("product page read from Redis failed")
        return _PageRead(key=key, body=None, version=None, written=False, answered=False)
    if isinstance(version, bytes) and isinstance(stored, bytes):
        stored_version, separator, body = stored.partition(b"\n")
        if separator and stored_version == version:
            metrics.count_cache_get(hit=True)
            return _PageRead(
                key=key, body=body, version=version, written=mark is not None, answered=True
            )
    held = version if isinstance(version, bytes) else None
    return _PageRead(key=key, body=None, version=held, written=mark is not None, answered=True)


_PAGE_SIZES = {str(size).encode(): size for size in PAGE_SIZES}
_BOOLEANS = {b"true": True, b"false": False}


def product_page_query(query: bytes) -> dict[str, Any] | None:
    """The page a query string names, read plainly: page as decimal digits, page_size one of
    PAGE_SIZES, hot true or false, each at most once, nothing else. Anything else (what
    ProductQuery may still accept, or answers 400) is None: the API reads it."""
    page, page_size, hot = 1, 20, None
    seen: set[bytes] = set()
    for part in query.split(b"&") if query else ():
        name, equals, value = part.partition(b"=")
        if not equals or name in seen:
            return None
        seen.add(name)
        if name == b"page":
            if not value.isdigit() or value.startswith(b"0") or len(value) > _PAGE_DIGITS:
                return None
            page = int(value)
            if page > MAX_PAGE:
                return None
        elif name == b"page_size" and value in _PAGE_SIZES:
            page_size = _PAGE_SIZES[value]
        elif name == b"hot" and value in _BOOLEANS:
            hot = _BOOLEANS[value]
        else:
            return None
    return {"page": page, "page_size": page_size, "hot": hot}


_PAGE_DIGITS = len(str(MAX_PAGE))
# GET /api/products, answered before Django on a hit (config/asgi.py).
EDGE_ROUTES = (EdgeRoute(view_name="api:products", parse=product_page_query, hit=product_page_hit),)


def _page_fill(*, page: int, page_size: int, hot: bool | None, written: bool) -> bytes:
    """Renders the page. A page missed soon after a write (`written`) is read from the primary:
    a lagging replica would store the old rows with the new version."""
    rows = selectors.product_list(page=page, page_size=page_size, hot=hot, from_primary=written)
    rendered: str = _RENDERER.render(
        None,  # type: ignore[arg-type]  # JSONRenderer never reads the request
        ProductPage.from_orm(rows).model_dump(),
        response_status=200,
    )
    return rendered.encode()


async def _page_store(key: str, value: bytes) -> None:
    """On the event loop's client, like the read: a stalled Redis costs the miss that stores
    its page at most SHOP_REDIS_TIMEOUT more, not the Django cache's own timeout."""
    ttl = cache.default_timeout
    try:
        with metrics.cache_call("set"):
            async with clients.use() as client:
                await client.execute(b"SET", key, value, *((b"EX", ttl) if ttl is not None else ()))
    except Exception:  # answered uncached
        _store_failed.warning("product page not cached; Redis unavailable")
