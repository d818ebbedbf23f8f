"""The server span's sampling decision, taken before OpenTelemetry's ASGI middleware runs.

OpenTelemetry's middleware does most of its per-request work (request attributes, the wrapped
send, its own duration metrics) whether the span is sampled or not, and every SQL statement,
Redis command and upstream call of the request then runs its instrumentation's wrapper only to
find the span not recorded. At the default sampler nine requests in ten are not sampled. Here
the sampler is asked first, with the trace ID the span would get:

- sampled: the request goes through OpenTelemetry's middleware, whose span gets that same trace
  ID (PresetIdGenerator), so the sampler decides alike and the trace is exactly as before;
- not sampled: the request goes straight to Django inside a non-recording span with that trace
  ID (log lines keep their trace_id), the parent's trace state kept, and the instrumentations
  suppressed for its length (core.tracing.unsampled set too, which its own checks read first):
  no SQL, Redis or upstream wrapper work. A Celery task it enqueues
  still carries its unsampled trace context (the Celery instrumentation injects it regardless),
  so the worker drops that trace as it did, and so do its upstream calls
  (core.tracing.UpstreamSessions sends their traceparent).

Imported by core.tracing only once tracing is on (it imports opentelemetry).
"""

from contextvars import ContextVar
from operator import itemgetter
from random import getrandbits as _random_bits
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from core.tracing import unsampled

_NO_PARENT = Context()
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_SERVER = trace.SpanKind.SERVER
_W3C = TraceContextTextMapPropagator()
_DROP = sampling.Decision.DROP
_name = itemgetter(0)  # of an ASGI header pair
# The trace ID the next new trace of this context starts with, when the decision was taken on it.
_preset_trace_id: ContextVar[int | None] = ContextVar("preset_trace_id", default=None)


def w3c_alone() -> bool:
    """Whether the global propagator is W3C trace context alone (core.tracing sets it), which
    reads and writes only traceparent and tracestate. Callers read it once, when built: a
    propagator set later is not seen."""
    return type(propagate.get_global_textmap()) is TraceContextTextMapPropagator


class PresetIdGenerator(RandomIdGenerator):
    """Random IDs, except a new trace's where SampledFirstMiddleware decided on one."""

    def generate_trace_id(self) -> int:
        trace_id = _preset_trace_id.get()
        if trace_id is None:
            return super().generate_trace_id()
        _preset_trace_id.set(None)  # once: the request's server span
        return trace_id


class DroppedSpan(trace.NonRecordingSpan):
    """A dropped request's span, whose context (a span ID drawn, every ID checked) is built only
    once something reads it: a log line, a propagated traceparent. A request answered from the
    edge cache reads none."""

    _built: trace.SpanContext | None = None  # until first read, none in the instance

    def __init__(
        self, trace_id: int, trace_state: trace.TraceState | None, ids: RandomIdGenerator
    ) -> None:
        self._trace_id = trace_id
        self._trace_state = trace_state
        self._ids = ids
        self._headers: dict[str, str] | None = None

    @property  # NonRecordingSpan's attribute, which its methods read
    def _context(self) -> trace.SpanContext:  # type: ignore[override]
        built = self._built
        if built is None:
            drawn = trace.SpanContext(
                self._trace_id,
                self._ids.generate_span_id(),
                is_remote=False,
                trace_flags=_NOT_SAMPLED,
                trace_state=self._trace_state,
            )
            # One dict step: of two threads reading it first, both get the one kept.
            built = self.__dict__.setdefault("_built", drawn)
        return built

    def traceparent(self) -> dict[str, str]:
        """The W3C trace context headers that carry this span (traceparent, and tracestate when
        the parent sent one), built once: every upstream call of its request sends the same."""
        headers = self._headers
        if headers is None:
            headers = {}
            _W3C.inject(headers, context=trace.set_span_in_context(self))
            self._headers = headers  # once filled: a thread reading meanwhile builds its own
        return dict(headers)  # the caller's to change


class SampledFirstMiddleware:
    """ASGI: an unsampled HTTP request bypasses `traced` (OpenTelemetry's middleware around
    `app`), and so does a probe (`excluded_paths`), with the instrumentations suppressed for its
    length; a sampled request or a non-HTTP scope goes through it."""

    def __init__(
        self,
        app: Any,
        traced: Any,
        *,
        sampler: sampling.Sampler,
        root: sampling.Sampler,
        id_generator: PresetIdGenerator,
        excluded_paths: frozenset[str],
    ) -> None:
        """`root`: what decides a new trace under `sampler` (a ParentBased's root sampler, or
        the sampler itself); asked directly when no parent was sent, its decision is the same
        without the parent's lookups."""
        self.app = app
        self.traced = traced
        self.sampler = sampler
        self.root = root
        self.ids = id_generator
        self.excluded_paths = excluded_paths
        # Under W3C trace context alone, a request that has neither of its headers (ASGI header
        # names are lowercase) starts a new trace without the propagator decoding each header.
        # Any other propagator is asked every time.
        self.fields: frozenset[bytes] | None = (
            frozenset(field.encode("latin-1") for field in _W3C.fields) if w3c_alone() else None
        )
        self.suppressed = _suppressing()
        # The key trace.set_span_in_context() puts a span under: a context is built here at
        # once, with the suppression's entries, rather than copied twice.
        (self.span_key,) = trace.set_span_in_context(trace.INVALID_SPAN, Context()).keys()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.traced(scope, receive, send)
            return
        if scope.get("path") in self.excluded_paths:
            with suppress_instrumentation():
                await self.app(scope, receive, send)
            return
        parent_context = None
        fields = self.fields
        if fields is None or not fields.isdisjoint(map(_name, scope.get("headers", ()))):
            parent = propagate.extract(scope, getter=asgi_getter)
            parent_context = trace.get_current_span(parent).get_span_context()
            if not parent_context.is_valid:
                parent_context = None
        else:
            parent = _NO_PARENT  # what the propagator extracts from a request without its headers
        if parent_context is None:
            # As RandomIdGenerator (PresetIdGenerator's base) draws one, without its two calls.
            trace_id = _random_bits(128)
            while trace_id == trace.INVALID_TRACE_ID:
                trace_id = _random_bits(128)
            sampler = self.root
        else:
            trace_id = parent_context.trace_id
            sampler = self.sampler
        decision = sampler.should_sample(parent, trace_id, scope.get("method", "HTTP"), _SERVER)
        if decision.decision is not _DROP:
            preset = _preset_trace_id.set(trace_id if parent_context is None else None)
            try:
                await self.traced(scope, receive, send)
            finally:
                _preset_trace_id.reset(preset)
            return
        span = DroppedSpan(trace_id, decision.trace_state, self.ids)
        # The span and the suppression in one context, attached once.
        token = context.attach(Context({**parent, self.span_key: span, **self.suppressed}))
        marked = unsampled.set(True)
        try:
            await self.app(scope, receive, send)
        finally:
            unsampled.reset(marked)
            context.detach(token)


def _suppressing() -> dict[str, object]:
    """The entries suppress_instrumentation() puts in a context, read from it once, in an empty
    one: whatever the context this runs in already holds (suppression included)."""
    token = context.attach(Context())
    try:
        with suppress_instrumentation():
            return dict(context.get_current())
    finally:
        context.detach(token)
