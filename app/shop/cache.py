"""The cached product list (GET /api/products): the cached read, its keys, the version every
page's key embeds, and the invalidation product writes call (shop/services.py)."""

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache

from shop import selectors
from shop.schemas import ProductPage

# Both keys live in the cache instance, which evicts when full. A version evicted starts again
# from the clock (products_version), never from a value old pages were cached under; a mark
# evicted lets a lagging replica's page be cached at most until its CACHE_TTL runs out.
PRODUCTS_VERSION_KEY = "products:version"
# Present for READ_YOUR_WRITES_SECONDS after a product write: a page missed meanwhile is filled
# from the primary, since the replica may not have replayed the write yet (product_page_get).
PRODUCTS_WRITTEN_KEY = "products:written"


def product_list_invalidate() -> None:
    """Every cached product page embeds the version: bumping it orphans them all at once."""
    # Marked before the bump: whoever reads the new version also finds the mark.
    cache.set(PRODUCTS_WRITTEN_KEY, 1, timeout=settings.READ_YOUR_WRITES_SECONDS)
    try:
        cache.incr(PRODUCTS_VERSION_KEY)
    except ValueError:  # evicted (or never set): a value no page was cached under
        cache.set(PRODUCTS_VERSION_KEY, time.time_ns(), timeout=None)


def products_version() -> int:
    """The version every cached product page's key embeds. Missing (evicted, a new Redis), it
    starts from the clock in nanoseconds: far above any count of bumps since the last start, so
    no page cached under an earlier version is ever read again."""
    version = cache.get(PRODUCTS_VERSION_KEY)
    if version is None:
        cache.add(PRODUCTS_VERSION_KEY, time.time_ns(), timeout=None)  # the first writer wins
        version = cache.get(PRODUCTS_VERSION_KEY, time.time_ns())
    return int(version)


def product_page_key(*, version: int, hot: bool | None, page: int, page_size: int) -> str:
    return f"products:v{version}:hot={hot}:p={page}:s={page_size}"


def product_page_get(*, page: int, page_size: int, hot: bool | None = None) -> dict[str, Any]:
    """A page of the catalogue as GET /api/products answers it, cached in Redis until the TTL or
    the next product write. The page is stored as ProductPage shapes it, so a hit is two GETs
    (the version, the page) and no model or query.

    A page missed soon after a write is filled from the primary: a lagging replica would put
    the old rows under the new version for the whole TTL.
    """
    key = product_page_key(version=products_version(), hot=hot, page=page, page_size=page_size)
    cached: dict[str, Any] | None = cache.get(key)
    if cached is not None:
        return cached
    rows = selectors.product_list(
        page=page, page_size=page_size, hot=hot, from_primary=bool(cache.get(PRODUCTS_WRITTEN_KEY))
    )
    result = ProductPage.from_orm(rows).model_dump()
    cache.set(key, result)
    return result
