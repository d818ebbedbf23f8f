"""The samplers core.tracing builds: the trace-ID ratio for new traces, and a cap on the traces
a process records each second.

A kept trace costs its process many times what a dropped one does (server span, a span per SQL
statement, Redis command and upstream call, their export: docs/BENCHMARKS.md, section 9), so
under a ratio alone tracing's cost grows with the traffic. Under the cap (a TraceBudget) it
stops growing past `per_second` recorded traces a second, while a quiet process still keeps its
full ratio. The same bargain as the per-instance rate limits other tracers ship with (Datadog's,
X-Ray's reservoir). A web worker caps the traces its clients ask for (a sampled traceparent)
with a budget of their own: a client can no longer have every request traced, nor, by asking
for every trace, take the budget the ratio's traces are kept within.

Both samplers decide at a trace's first span in this process (under ParentBased: its root, and
a remote parent's delegate); asked for every span, they would drop spans of a trace they kept.

Imported by core.tracing only once tracing is on (it imports opentelemetry).
"""

import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

# The trace this context's last decision kept: asked again for it, the budget keeps it without
# another token. core.sampled_asgi asks for a request's trace before the SDK asks at its server
# span; without this the second ask could drop what the first kept, and each kept trace would
# count twice.
_kept: ContextVar[int | None] = ContextVar("trace_budget_kept", default=None)
# A new trace's drop: no parent, so no parent's trace state to carry.
_DROPPED = sampling.SamplingResult(sampling.Decision.DROP)


class TraceBudget:
    """At most `per_second` traces a second: a token bucket holding as many tokens, full at
    start, so that a burst after a quiet spell is kept up to one second's worth."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be over 0, got {per_second!r}")
        self.per_second = per_second
        self._capacity = max(per_second, 1.0)  # under one a second: one trace now and then
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()
        # Threads ask too (a sync view's, a Celery pool's); a forked worker's copy is never held:
        # the fork comes before any request.
        self._lock = threading.Lock()

    def take(self, trace_id: int) -> bool:
        """True: record this trace (a token taken, or none needed: this context kept it)."""
        if _kept.get() == trace_id:
            return True
        with self._lock:
            now = self._clock()
            tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            if tokens < 1:
                self._tokens = tokens
                return False
            self._tokens = tokens - 1
        _kept.set(trace_id)
        return True

    def __str__(self) -> str:
        return f"{self.per_second:g}/s"


class CappedRatio(sampling.TraceIdRatioBased):
    """The ratio sampler for a new trace (ParentBased's root), within `budget` when there is
    one. Only for a trace with no parent: a drop carries no parent's trace state, and takes one
    comparison, as OpenTelemetry's own takes several calls."""

    def __init__(self, rate: float, *, budget: TraceBudget | None) -> None:
        super().__init__(rate)
        self.budget = budget
        # The parent's `bound`, a property: read once here, not at every decision.
        self._under = self.bound

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
        if trace_id & self.TRACE_ID_LIMIT >= self._under or not (
            self.budget is None or self.budget.take(trace_id)
        ):
            return _DROPPED
        return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        ratio = super().get_description()
        return ratio if self.budget is None else f"Capped{{{ratio}, {self.budget}}}"


class CappedParent(sampling.Sampler):
    """A remote parent's sampled flag obeyed within `budget`: the rest dropped, with the
    parent's trace state either way."""

    def __init__(self, *, budget: TraceBudget) -> None:
        self.budget = budget

    def should_sample(
        self, parent_context: Context | None, trace_id: int, *args: Any, **kwargs: Any
    ) -> sampling.SamplingResult:
        # The rest of the arguments as the SDK passes them, on to the static sampler.
        static = sampling.ALWAYS_ON if self.budget.take(trace_id) else sampling.ALWAYS_OFF
        return static.should_sample(parent_context, trace_id, *args, **kwargs)

    def get_description(self) -> str:
        return f"Capped{{{sampling.ALWAYS_ON.get_description()}, {self.budget}}}"
