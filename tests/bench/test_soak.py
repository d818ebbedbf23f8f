"""make soak's verdict on memory: pure parts, no Docker."""

import pytest

from bench import soak


@pytest.mark.parametrize(
    ("series", "flat"),
    [
        # Recycling: workers grow and are replaced; the sawtooth comes back down.
        ([100, 140, 180, 110, 150, 190, 105, 145, 185, 100, 140, 180], True),
        # Warm-up growth in the first quarter only.
        ([60, 80, 100, 100, 101, 100, 99, 100, 101, 100, 100, 101], True),
        # A leak: 3 percent a sample, never returned.
        ([100 * 1.03**i for i in range(12)], False),
    ],
)
def test_soak_memory_flatness(series, flat):
    assert soak.flatness(series)["flat"] is flat


def test_soak_needs_enough_samples_to_judge():
    assert soak.flatness([100.0, 101.0, 102.0])["flat"] is None
