"""The cached product list (GET /api/products): the cached read, its keys, the version every
page is stored with, and the invalidation product writes call (shop/services.py)."""

import logging
import time
from time import perf_counter

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection
from ninja.renderers import JSONRenderer

from core.metrics import count_cache_get, observe_cache
from shop import selectors
from shop.redis import clients
from shop.schemas import ProductPage

log = logging.getLogger(__name__)

# Both keys live in the cache instance, which evicts when full. A version evicted starts again
# from the clock (products_version), never from a value old pages were stored with; a mark
# evicted lets a lagging replica's page be cached at most until its CACHE_TTL runs out.
PRODUCTS_VERSION_KEY = "products:version"
# Present for READ_YOUR_WRITES_SECONDS after a product write: a page missed meanwhile is filled
# from the primary, since the replica may not have replayed the write yet (_page_fill).
PRODUCTS_WRITTEN_KEY = "products:written"
# The API's own renderer (ninja's default JSON, with its encoder): a hit answers the very bytes
# the view would have rendered.
_RENDERER = JSONRenderer()
CONTENT_TYPE = f"{_RENDERER.media_type}; charset={_RENDERER.charset}"


def product_list_invalidate() -> None:
    """Every cached product page is stored with the version: bumping it makes them all stale
    at once."""
    # Marked before the bump: whoever reads the new version also finds the mark.
    cache.set(PRODUCTS_WRITTEN_KEY, 1, timeout=settings.READ_YOUR_WRITES_SECONDS)
    try:
        cache.incr(PRODUCTS_VERSION_KEY)
    except ValueError:  # evicted (or never set): a value no page was stored with
        cache.set(PRODUCTS_VERSION_KEY, time.time_ns(), timeout=None)


def products_version() -> int:
    """The version a product page is stored with. Missing (evicted, a new Redis), it starts
    from the clock in nanoseconds: far above any count of bumps since the last start, so no
    page stored with an earlier version is ever answered again."""
    version = cache.get(PRODUCTS_VERSION_KEY)
    if version is None:
        cache.add(PRODUCTS_VERSION_KEY, time.time_ns(), timeout=None)  # the first writer wins
        version = cache.get(PRODUCTS_VERSION_KEY, time.time_ns())
    return int(version)


def product_page_key(*, hot: bool | None, page: int, page_size: int) -> str:
    """The page's key in the cache instance, with the cache's prefix (as Django's cache would
    name it): its value is b"<version>\\n" and the rendered JSON."""
    return str(cache.make_key(f"products:hot={hot}:p={page}:s={page_size}"))


async def product_page_aget(*, page: int, page_size: int, hot: bool | None = None) -> bytes:
    """A page of the catalogue as GET /api/products answers it: the JSON bytes, cached in Redis
    until the TTL or the next product write.

    A hit is one round trip on the event loop (the version and the page in one MGET) and the
    stored bytes as they are: no thread, model, validation or rendering. A page stored with
    another version than the current one is a miss. Redis failing or slow (SHOP_REDIS_TIMEOUT)
    is a miss too: the database answers.
    """
    key = product_page_key(hot=hot, page=page, page_size=page_size)
    start = perf_counter()
    try:
        async with clients.use() as client:
            version, stored = await client.mget(cache.make_key(PRODUCTS_VERSION_KEY), key)
    except Exception:
        log.warning("product page read from Redis failed", exc_info=True)
        version = stored = None
    observe_cache("get_many", perf_counter() - start)
    if isinstance(version, bytes) and isinstance(stored, bytes):
        stored_version, _, body = stored.partition(b"\n")
        if stored_version == version:
            count_cache_get(hit=True)
            return body
    count_cache_get(hit=False)
    # The request's thread: the ORM is sync (core.db's read and its replica fallback).
    return await sync_to_async(_page_fill)(key=key, page=page, page_size=page_size, hot=hot)


def _page_fill(*, key: str, page: int, page_size: int, hot: bool | None) -> bytes:
    """Renders the page and stores it with the version read before its query: a write that
    commits meanwhile bumps the version, so the page is stale at once rather than for its TTL.
    A page missed soon after a write is read from the primary: a lagging replica would store
    the old rows with the new version."""
    version = products_version()
    rows = selectors.product_list(
        page=page, page_size=page_size, hot=hot, from_primary=bool(cache.get(PRODUCTS_WRITTEN_KEY))
    )
    rendered: str = _RENDERER.render(
        None,  # type: ignore[arg-type]  # JSONRenderer never reads the request
        ProductPage.from_orm(rows).model_dump(),
        response_status=200,
    )
    body = rendered.encode()
    start = perf_counter()
    try:
        get_redis_connection("default").set(key, b"%d\n" % version + body, ex=cache.default_timeout)
    except Exception:  # as the cache's IGNORE_EXCEPTIONS: answered uncached
        log.warning("product page not cached; Redis unavailable", exc_info=True)
    observe_cache("set", perf_counter() - start)
    return body
