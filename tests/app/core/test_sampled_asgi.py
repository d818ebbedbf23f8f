"""core.sampled_asgi's unsampled path attaches the instrumentations' suppression with the
request's span, in one context: the entries it attaches are suppress_instrumentation()'s own,
wherever the middleware was built. The span's context is built once, whoever reads it first."""

import threading

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import (
    is_instrumentation_enabled,
    suppress_instrumentation,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from core.sampled_asgi import DroppedSpan, _suppressing


def test_the_suppression_attached_is_suppress_instrumentations_own():
    entries = _suppressing()
    token = context.attach(Context(entries))
    try:
        assert not is_instrumentation_enabled()
    finally:
        context.detach(token)
    assert is_instrumentation_enabled()


def test_built_under_suppression_it_still_takes_every_entry():
    """Built where instrumentation is already suppressed, it takes the same entries, not none."""
    outside = _suppressing()
    with suppress_instrumentation():
        inside = _suppressing()
    assert inside == outside
    assert len(outside) == 2  # the context key and its plain-string twin, both checked


def test_a_dropped_spans_context_is_the_same_for_two_threads_reading_it_first():
    """A second thread reads the span while the first is drawing its span ID: both, and every
    later read, get one context (a log line and a traceparent name the same span)."""
    other: list[object] = []

    class Ids(RandomIdGenerator):
        draws = 0

        def generate_span_id(self) -> int:
            Ids.draws += 1
            if Ids.draws == 1:  # the first reader, mid-build: another thread reads meanwhile
                reader = threading.Thread(target=lambda: other.append(span.get_span_context()))
                reader.start()
                reader.join()
            return super().generate_span_id()

    span = DroppedSpan(0x4BF92F3577B34DA6A3CE929D0E0E4736, None, Ids())
    first = span.get_span_context()
    assert other == [first]
    assert span.get_span_context() is first
    assert first.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert not first.trace_flags.sampled
