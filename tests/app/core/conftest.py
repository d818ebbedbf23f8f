"""Fixtures of core's tests."""

from collections.abc import Callable

import pytest

from core import db


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stops core.db's clock (a loaded machine cannot stretch a burst past the local TTL);
    calling the fixture moves it on."""
    now = [1000.0]
    monkeypatch.setattr(db, "monotonic", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance
