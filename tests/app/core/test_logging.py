"""core.logging's ThrottledWarning: a failure repeated by every request is one line per
interval, with its traceback and the count of those it stood for."""

import logging
import time

from core.logging import ThrottledWarning


def test_a_throttled_warning_logs_once_per_interval_with_how_many_it_stood_for(caplog):
    log = logging.getLogger("tests.throttled")
    warn = ThrottledWarning(log, every=0.3)

    def fail(times: int) -> None:
        for _ in range(times):
            try:
                raise OSError("Redis down")
            except OSError:
                warn.warning("read from Redis failed")

    fail(5)
    time.sleep(0.35)
    fail(1)
    records = [record for record in caplog.records if record.name == "tests.throttled"]
    assert [record.getMessage() for record in records] == [
        "read from Redis failed",
        "read from Redis failed (4 more since the last such line, not logged)",
    ]
    assert all(record.exc_info and record.exc_info[0] is OSError for record in records)
