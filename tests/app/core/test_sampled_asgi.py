"""core.sampled_asgi's unsampled path attaches the instrumentations' suppression with the
request's span, in one context: the entries it attaches are suppress_instrumentation()'s own,
wherever the middleware was built."""

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import (
    is_instrumentation_enabled,
    suppress_instrumentation,
)

from core.sampled_asgi import _suppressing


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
