from collections.abc import Callable, Iterator

import pytest
from django.db import connections


@pytest.fixture
def conn_max_age() -> Iterator[Callable[[int], None]]:
    settings_dict = connections["default"].settings_dict
    before = settings_dict["CONN_MAX_AGE"]

    def set_to(seconds: int) -> None:
        # Read when a thread opens its connection: every thread of a new handler sees it.
        settings_dict["CONN_MAX_AGE"] = seconds

    yield set_to
    settings_dict["CONN_MAX_AGE"] = before
