"""The two upstream HTTP services of product detail: price and recommendations.

One aiohttp session per worker (see core.aio): pooled connections, no client built per request;
how it compares with httpx: docs/BENCHMARKS.md, scenario 2.
Every call has its own timeout, reads at most UPSTREAM_MAX_BODY_BYTES and validates the answer
against a schema; it returns None on any failure, so the caller can fall back. A service that
answers garbage degrades the page as one that does not answer does. After
UPSTREAM_BREAKER_FAILURES failures in a row a service's calls are skipped for
UPSTREAM_BREAKER_SECONDS (Breaker): a service that is down costs its timeout once per cool-down,
not on every page.
"""

import asyncio
import json
import logging
from time import monotonic
from typing import Annotated, Any

import aiohttp
from django.conf import settings
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core import tracing
from core.aio import PerLoop
from core.schemas import MAX_BIGINT, Money, json_integer

log = logging.getLogger(__name__)


class UpstreamAnswer(BaseModel):
    # Strict: 12.5 is not a price and "7" is not a product id. Unknown keys are ignored.
    model_config = ConfigDict(strict=True, frozen=True)


class PriceAnswer(UpstreamAnswer):
    price: Money


ProductId = Annotated[int, Field(ge=1, le=MAX_BIGINT), BeforeValidator(json_integer)]


class RecommendationsAnswer(UpstreamAnswer):
    product_ids: list[ProductId] = Field(max_length=100)


def _sessions() -> tracing.UpstreamSessions:
    connector = aiohttp.TCPConnector(
        # Concurrent connections per worker across both services. A call past it waits for
        # one, so the pool caps a worker's calls at pool / latency: sized above the calls of
        # every request the worker serves at once (.env.example).
        limit=settings.UPSTREAM_POOL_SIZE,
        # Compose/Kubernetes service names resolve to stable addresses; re-resolve every minute.
        ttl_dns_cache=60,
        # Reuse idle connections for 30s, below the upstream server's own keep-alive timeout.
        keepalive_timeout=30,
    )
    # A traced request's calls and the others' on one pool (core.tracing says why two sessions).
    return tracing.UpstreamSessions(connector, raise_for_status=False)


async def _close(sessions: tracing.UpstreamSessions) -> None:
    await sessions.close()


sessions: PerLoop[tracing.UpstreamSessions] = PerLoop(_sessions, _close)


async def _body(response: aiohttp.ClientResponse, *, limit: int) -> bytes | None:
    """The body, or None past `limit` bytes: a runaway answer never fills the worker's memory."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def fetch_json(url: str, *, timeout: float) -> Any | None:
    """Any JSON, unvalidated: for the benchmark endpoints (bench_endpoints), not the shop."""
    try:
        async with (
            sessions.use() as pair,
            pair.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response,
        ):
            if response.status != 200:
                return None
            body = await _body(response, limit=settings.UPSTREAM_MAX_BODY_BYTES)
        return None if body is None else json.loads(body)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None


class Breaker:
    """A circuit breaker per service and worker process. Closed, every call goes out; after
    UPSTREAM_BREAKER_FAILURES failed calls in a row it opens: calls are skipped (the caller's
    fallback answers at once) for UPSTREAM_BREAKER_SECONDS. Then one call goes out as a probe
    while the others are still skipped: a success closes the breaker, a failure opens it again.
    Calls run on one event loop per worker, so its state needs no lock."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def allow(self) -> bool:
        if self.failures < settings.UPSTREAM_BREAKER_FAILURES:
            return True
        if self.probing or monotonic() < self.open_until:
            return False
        self.probing = True
        return True

    def record(self, *, ok: bool) -> None:
        self.probing = False
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= settings.UPSTREAM_BREAKER_FAILURES:
            if self.failures == settings.UPSTREAM_BREAKER_FAILURES:
                log.warning(
                    "upstream %s failed %d times in a row: its calls are skipped for %ss",
                    self.service,
                    self.failures,
                    settings.UPSTREAM_BREAKER_SECONDS,
                    extra={"service": self.service},
                )
            self.open_until = monotonic() + settings.UPSTREAM_BREAKER_SECONDS

    def abandon(self) -> None:
        """A call cancelled before its outcome (the client went away): no verdict either way."""
        self.probing = False


breakers = {"price": Breaker("price"), "recommendations": Breaker("recommendations")}


async def fetch[Answer: "UpstreamAnswer"](
    url: str, *, timeout: float, schema: type[Answer], breaker: Breaker
) -> Answer | None:
    if not breaker.allow():
        return None
    try:
        answer = await _fetch(url, timeout=timeout, schema=schema)
    except asyncio.CancelledError:
        breaker.abandon()
        raise
    breaker.record(ok=answer is not None)
    return answer


async def _fetch[Answer: "UpstreamAnswer"](
    url: str, *, timeout: float, schema: type[Answer]
) -> Answer | None:
    try:
        async with (
            sessions.use() as pair,
            pair.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response,
        ):
            if response.status != 200:
                log.warning("upstream answered %s", response.status, extra={"url": url})
                return None
            body = await _body(response, limit=settings.UPSTREAM_MAX_BODY_BYTES)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("upstream call failed: %s", type(exc).__name__, extra={"url": url})
        return None
    if body is None:
        log.warning("upstream answer over UPSTREAM_MAX_BODY_BYTES", extra={"url": url})
        return None
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:  # also not JSON, or cut short
        log.warning("upstream answer malformed: %s", exc.errors()[0]["msg"], extra={"url": url})
        return None


async def price_get(*, product_id: int) -> PriceAnswer | None:
    return await fetch(
        f"{settings.PRICE_SERVICE_URL}/price/{product_id}",
        timeout=settings.PRICE_TIMEOUT,
        schema=PriceAnswer,
        breaker=breakers["price"],
    )


async def recommendations_get(*, product_id: int) -> RecommendationsAnswer | None:
    return await fetch(
        f"{settings.RECOMMENDATIONS_SERVICE_URL}/recommendations/{product_id}",
        timeout=settings.RECOMMENDATIONS_TIMEOUT,
        schema=RecommendationsAnswer,
        breaker=breakers["recommendations"],
    )
