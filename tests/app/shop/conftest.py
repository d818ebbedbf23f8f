import pytest

from core.logging import ThrottledWarning
from shop import cache, stock


@pytest.fixture(autouse=True)
def _warnings_unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the shop's throttled warnings fresh: one an earlier test logged
    less than an interval ago would otherwise hold back the line a test looks for."""
    for module in (cache, stock):
        for name, value in list(vars(module).items()):
            if isinstance(value, ThrottledWarning):
                monkeypatch.setattr(module, name, ThrottledWarning(module.log))
