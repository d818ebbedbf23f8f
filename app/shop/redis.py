"""The event loop's client of the cache instance: the async reads on the request path (the
product page's stock, a cached product page) go through it, one pipelined connection per loop
(core.aio, core.resp)."""

from django.conf import settings

from core.aio import PerLoop
from core.resp import PipelinedRedis


def _client() -> PipelinedRedis:
    return PipelinedRedis(
        host=settings.REDIS_CACHE_HOST,
        port=settings.REDIS_CACHE_PORT,
        password=settings.REDIS_CACHE_PASSWORD,
        db=settings.REDIS_CACHE_DB,
        timeout=settings.SHOP_REDIS_TIMEOUT,
    )


async def _close(client: PipelinedRedis) -> None:
    await client.aclose()


clients: PerLoop[PipelinedRedis] = PerLoop(_client, _close)
