"""A cap on the new traces a process keeps each second, over the ratio sampler's choice.

A kept trace costs its process many times what a dropped one does (server span, a span per SQL
statement, Redis command and upstream call, their export: docs/BENCHMARKS.md, section 9), so
under a ratio alone tracing's cost grows with the traffic. Under the cap it stops growing past
`per_second` kept traces a second, while a quiet process still keeps its full ratio. The same
bargain as the per-instance rate limits other tracers ship with (Datadog's, X-Ray's
reservoir).

Only for a root sampler under ParentBased (core.tracing.sampler): there it decides once per
trace, at its first span. Asked for every span (a bare ratio sampler), it would drop some spans
of a trace it had kept.

Imported by core.tracing only once tracing is on (it imports opentelemetry).
"""

import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

# The trace this context's last decision kept: asked again for it, the cap keeps it without
# another token. core.sampled_asgi asks for a request's trace before the SDK asks at its server
# span; without this the second ask could drop what the first kept, and each kept trace would
# count twice.
_kept: ContextVar[int | None] = ContextVar("rate_capped_kept", default=None)


class RateCapped(sampling.Sampler):
    """What `sampler` keeps, at most `per_second` new traces a second: a token bucket holding
    as many tokens, full at start, so that a burst after a quiet spell is kept up to one
    second's worth. A decision to drop costs nothing more than the sampler's own."""

    def __init__(
        self,
        sampler: sampling.Sampler,
        *,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be over 0, got {per_second!r}")
        self._sampler = sampler
        self._rate = per_second
        self._capacity = max(per_second, 1.0)  # under one a second: one trace now and then
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()
        # Threads ask too (a sync view's spans, a Celery pool's); a request thread of a forked
        # worker never holds it across the fork, which happens before any request.
        self._lock = threading.Lock()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> sampling.SamplingResult:
        result = self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not sampling.Decision.RECORD_AND_SAMPLE:
            return result
        if _kept.get() == trace_id or self._take():
            _kept.set(trace_id)
            return result
        return sampling.SamplingResult(sampling.Decision.DROP, None, result.trace_state)

    def _take(self) -> bool:
        with self._lock:
            now = self._clock()
            tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if tokens < 1:
                self._tokens = tokens
                return False
            self._tokens = tokens - 1
            return True

    def get_description(self) -> str:
        return f"RateCapped{{{self._sampler.get_description()}, {self._rate:g}/s}}"
