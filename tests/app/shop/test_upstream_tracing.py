"""The product page's upstream calls carry their request's trace through shop.upstream's own
session, sampled or not: tests/app/core/test_tracing.py's traced app and local upstream, with the
price call the page makes (shop.upstream.price_get) in place of a session built by the test."""

from tests.app.core.test_tracing import sampled_first, upstream_trace

PRICE_CALL = r"""
from django.conf import settings
from core import aio
from shop import upstream

settings.PRICE_SERVICE_URL = upstream_url

async def call_upstream():
    # In the session shop.upstream builds for this loop, after tracing's setup; closed as a
    # stopping worker closes it (runtime/lifespan.py).
    answer = await upstream.price_get(product_id=7)
    # Answered: the call went out through the page's own path, not skipped or failed.
    assert answer is not None and str(answer.price) == "19.90", answer
    async with upstream.sessions.use() as sessions:
        session, _ = sessions.pick()  # the one the call went through, in this same context
        hooks = len(session.trace_configs)
    await aio.loop_clients_close()
    return hooks
"""


def test_the_product_pages_upstream_calls_carry_the_trace_sampled_or_not():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    seen = sampled_first(f"00-{trace_id}-00f067aa0ba902b7-00", upstream_call=PRICE_CALL)
    assert seen["statuses"] == [200]
    client, *new = seen["seen"]
    # The client's unsampled trace: no span of the app's and no hook of aiohttp's ran, so the
    # sessions sent it themselves.
    assert upstream_trace(client) == (trace_id, False)
    assert client["upstream_hooks"] == 0
    # New traces, both kinds among 200 at a tenth: each call carries its own request's trace and
    # the sampler's decision; only a kept request's call runs aiohttp's hooks (a span of it).
    assert {s["recording"] for s in new} == {True, False}
    for s in new:
        assert upstream_trace(s) == (s["trace_id"], s["recording"])
        assert (s["upstream_hooks"] > 0) is s["recording"]
    assert sorted(seen["upstream_spans"]) == sorted(s["trace_id"] for s in new if s["recording"])
