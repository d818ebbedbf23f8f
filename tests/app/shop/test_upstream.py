"""shop.upstream's client: UPSTREAM_POOL_SIZE bounds a worker's connections to the upstreams."""

import asyncio

import pytest

from shop.upstream import fetch_json, sessions
from tests.app.conftest import Blackhole


async def _connections_while_hung(blackhole: Blackhole, count: int) -> int:
    """Opened by `count` calls at once to a service that never answers, while they all wait."""
    url = f"http://127.0.0.1:{blackhole.port}/price/1"
    calls = [asyncio.ensure_future(fetch_json(url, timeout=30)) for _ in range(count)]
    try:
        await asyncio.sleep(1)  # every call has connected or is waiting for a connection
        return blackhole.connections
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await sessions.close_for_loop()


@pytest.mark.parametrize("pool", [3, 6])
def test_a_worker_opens_at_most_its_pool_of_connections(settings, blackhole: Blackhole, pool):
    # Six calls at once: past the pool, a call waits for a connection instead of opening one.
    settings.UPSTREAM_POOL_SIZE = pool
    assert asyncio.run(_connections_while_hung(blackhole, 6)) == pool
