"""core.sampling.RateCapped: the ratio sampler's choice, at most so many new traces a second,
on a clock the test moves."""

import contextvars

import pytest
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import TraceState

from core.sampling import RateCapped


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def kept(sampler: sampling.Sampler, count: int, *, trace_id: int = 1) -> int:
    """Of `count` new traces, each decided in a context of its own (a request's), how many
    the sampler keeps."""
    results = [
        contextvars.copy_context().run(sampler.should_sample, None, trace_id + n, "GET")
        for n in range(count)
    ]
    return sum(r.decision is sampling.Decision.RECORD_AND_SAMPLE for r in results)


def test_a_burst_keeps_one_seconds_worth_then_one_per_tick_of_the_rate():
    clock = Clock()
    capped = RateCapped(sampling.ALWAYS_ON, per_second=8, clock=clock)
    assert kept(capped, 25) == 8
    clock.now += 0.0625  # half a token
    assert kept(capped, 5) == 0
    clock.now += 0.0625
    assert kept(capped, 5) == 1
    clock.now += 60  # a quiet minute refills the bucket, never past one second's worth
    assert kept(capped, 25) == 8


def test_under_the_cap_the_ratio_alone_decides():
    clock = Clock()
    ratio = sampling.TraceIdRatioBased(0.1)
    capped = RateCapped(ratio, per_second=10, clock=clock)
    tenth = int(0.1 * 2**64)
    # Eight requests a second under the ratio (and as many over it): each kept, none other.
    for _ in range(30):
        clock.now += 0.125
        assert kept(capped, 1, trace_id=tenth - 1) == 1
        assert kept(capped, 1, trace_id=tenth + 1) == 0


def test_a_drop_of_the_ratio_takes_no_token():
    clock = Clock()
    capped = RateCapped(sampling.ALWAYS_OFF, per_second=1, clock=clock)
    assert kept(capped, 50) == 0
    assert kept(RateCapped(sampling.ALWAYS_ON, per_second=1, clock=clock), 3) == 1


def test_a_capped_drop_keeps_the_trace_state():
    class Keeps(sampling.Sampler):
        def should_sample(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            state = TraceState([("vendor", "x")])
            return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, None, state)

        def get_description(self) -> str:
            return "Keeps"

    capped = RateCapped(Keeps(), per_second=1, clock=Clock())
    contextvars.copy_context().run(capped.should_sample, None, 1, "GET")
    dropped = contextvars.copy_context().run(capped.should_sample, None, 2, "GET")
    assert dropped.decision is sampling.Decision.DROP
    assert dropped.trace_state == TraceState([("vendor", "x")])


def test_under_one_a_second_it_still_keeps_one_now_and_then():
    clock = Clock()
    capped = RateCapped(sampling.ALWAYS_ON, per_second=0.5, clock=clock)
    assert kept(capped, 5) == 1
    clock.now += 1.75
    assert kept(capped, 5) == 0
    clock.now += 0.25
    assert kept(capped, 5) == 1


@pytest.mark.parametrize("per_second", [0, -1.0])
def test_a_cap_of_nothing_is_refused(per_second):
    with pytest.raises(ValueError, match="per_second must be over 0"):
        RateCapped(sampling.ALWAYS_ON, per_second=per_second)


def test_its_description_names_both():
    capped = RateCapped(sampling.TraceIdRatioBased(0.1), per_second=10)
    assert capped.get_description() == "RateCapped{TraceIdRatioBased{0.1}, 10/s}"


def test_a_trace_it_kept_is_kept_when_asked_again_in_its_context_for_no_token():
    """core.sampled_asgi decides first, then the SDK asks again at the server span."""
    capped = RateCapped(sampling.ALWAYS_ON, per_second=1, clock=Clock())

    def request(trace_id: int) -> list[bool]:
        return [
            capped.should_sample(None, trace_id, name).decision
            is sampling.Decision.RECORD_AND_SAMPLE
            for name in ("GET", "GET api/products")
        ]

    assert contextvars.copy_context().run(request, 7) == [True, True]
    assert contextvars.copy_context().run(request, 8) == [False, False]  # the one token spent
