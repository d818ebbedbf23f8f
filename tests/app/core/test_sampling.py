"""core.sampling: the ratio for new traces and the cap on the traces recorded, on a clock the
test moves, each decision in a context of its own (a request's)."""

import contextvars

import pytest
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from core.sampling import CappedParent, CappedRatio, TraceBudget

TENTH = int(0.1 * 2**64)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def budget(per_second: float, clock: Clock) -> TraceBudget:
    return TraceBudget(per_second, clock=clock)


def decide(sampler: sampling.Sampler, trace_id: int, parent=None) -> sampling.SamplingResult:  # type: ignore[no-untyped-def]
    return contextvars.copy_context().run(sampler.should_sample, parent, trace_id, "GET")


def kept(sampler: sampling.Sampler, count: int, *, trace_id: int = 1, parent=None) -> int:  # type: ignore[no-untyped-def]
    results = [decide(sampler, trace_id + n, parent) for n in range(count)]
    return sum(r.decision is sampling.Decision.RECORD_AND_SAMPLE for r in results)


def client_parent(*, sampled: bool, state: TraceState | None = None):  # type: ignore[no-untyped-def]
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(2**100, 0x1234, is_remote=True, trace_flags=flags, trace_state=state)
    return set_span_in_context(NonRecordingSpan(parent))


def test_a_burst_keeps_one_seconds_worth_then_one_per_tick_of_the_rate():
    clock = Clock()
    capped = CappedRatio(1.0, budget=budget(8, clock))
    assert kept(capped, 25) == 8
    clock.now += 0.0625  # half a token
    assert kept(capped, 5) == 0
    clock.now += 0.0625
    assert kept(capped, 5) == 1
    clock.now += 60  # a quiet minute refills the bucket, never past one second's worth
    assert kept(capped, 25) == 8


def test_under_the_cap_the_ratio_alone_decides_as_opentelemetrys_own():
    clock = Clock()
    capped = CappedRatio(0.1, budget=budget(16, clock))
    theirs = sampling.TraceIdRatioBased(0.1)
    # Sixteen new traces a second under the ratio (and more over it): each kept, none other;
    # only the ID's low 64 bits count.
    for _ in range(30):
        clock.now += 0.125
        for trace_id in (TENTH - 1, TENTH, TENTH + 1, 2**64 + TENTH - 1):
            ours, reference = decide(capped, trace_id), decide(theirs, trace_id)
            assert ours.decision is reference.decision, trace_id
            assert ours.trace_state == reference.trace_state


def test_with_no_budget_it_is_the_ratio():
    uncapped = CappedRatio(1.0, budget=None)
    assert kept(uncapped, 500) == 500
    assert uncapped.get_description() == "TraceIdRatioBased{1.0}"


def test_a_drop_of_the_ratio_takes_no_token():
    clock = Clock()
    shared = budget(1, clock)
    assert kept(CappedRatio(0.0, budget=shared), 50) == 0
    assert kept(CappedRatio(1.0, budget=shared), 3) == 1


def test_under_one_a_second_it_still_keeps_one_now_and_then():
    clock = Clock()
    capped = CappedRatio(1.0, budget=budget(0.5, clock))
    assert kept(capped, 5) == 1
    clock.now += 1.75
    assert kept(capped, 5) == 0
    clock.now += 0.25
    assert kept(capped, 5) == 1


def test_a_trace_it_kept_is_kept_when_asked_again_in_its_context_for_no_token():
    """core.sampled_asgi decides first, then the SDK asks again at the server span."""
    capped = CappedRatio(1.0, budget=budget(1, Clock()))

    def request(trace_id: int) -> list[bool]:
        return [
            capped.should_sample(None, trace_id, name).decision
            is sampling.Decision.RECORD_AND_SAMPLE
            for name in ("GET", "GET api/products")
        ]

    assert contextvars.copy_context().run(request, 7) == [True, True]
    assert contextvars.copy_context().run(request, 8) == [False, False]  # the one token spent


def test_a_clients_sampled_parent_spends_its_own_budget_and_keeps_its_trace_state():
    clock = Clock()
    new_traces = CappedRatio(1.0, budget=budget(4, clock))
    clients = sampling.ParentBased(
        new_traces, remote_parent_sampled=CappedParent(budget=budget(4, clock))
    )
    state = TraceState([("vendor", "x")])
    asked = client_parent(sampled=True, state=state)
    assert kept(clients, 10, parent=asked) == 4
    # Clients asking for every trace take none of the ratio's budget.
    assert kept(new_traces, 10) == 4
    dropped = decide(clients, 99, asked)
    assert dropped.decision is sampling.Decision.DROP
    assert dropped.trace_state == state
    clock.now += 1
    followed = decide(clients, 100, asked)
    assert followed.decision is sampling.Decision.RECORD_AND_SAMPLE
    assert followed.trace_state == state
    # A client's unsampled parent is obeyed as before, and spends nothing.
    assert kept(clients, 10, parent=client_parent(sampled=False)) == 0
    assert kept(clients, 3, parent=asked) == 3


@pytest.mark.parametrize("per_second", [0, -1.0])
def test_a_budget_of_nothing_is_refused(per_second):
    with pytest.raises(ValueError, match="per_second must be over 0"):
        TraceBudget(per_second)


def test_their_descriptions_name_the_cap():
    shared = TraceBudget(10)
    assert CappedRatio(0.1, budget=shared).get_description() == (
        "Capped{TraceIdRatioBased{0.1}, 10/s}"
    )
    assert CappedParent(budget=shared).get_description() == "Capped{AlwaysOnSampler, 10/s}"
