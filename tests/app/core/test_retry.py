"""core.retry: a write lost after a commit is retried until it lands, or until what it fixes has
expired; one thread however many failures, and none left behind."""

import logging
import threading

from core.retry import RetryInBackground
from tests.support import wait_until


class Attempts:
    """An attempt that fails `failures` times, then lands; calls `during` inside the first."""

    def __init__(self, failures: int, during: object = None) -> None:
        self.failures = failures
        self.calls = 0
        self.during = during

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls == 1 and callable(self.during):
            self.during()
        return self.calls > self.failures


def _threads(name: str) -> int:
    return sum(thread.name == name for thread in threading.enumerate())


def test_a_lost_write_is_retried_until_it_lands_on_one_thread():
    attempts = Attempts(failures=3)
    retry = RetryInBackground("retry-lands", attempts, within=lambda: 60, every=0.2)
    for _ in range(5):  # five failures reported: still one thread
        retry.later()
    assert _threads("retry-lands") == 1
    wait_until(lambda: not retry.pending, timeout=10, what="the retry ended")
    assert attempts.calls == 4
    assert _threads("retry-lands") == 0


def test_a_failure_reported_during_an_attempt_is_retried_again():
    # The attempt carried what was pending when it started: a write failing meanwhile is newer.
    retry: RetryInBackground
    attempts = Attempts(failures=0, during=lambda: retry.later())
    retry = RetryInBackground("retry-again", attempts, within=lambda: 60, every=0.05)
    retry.later()
    wait_until(lambda: not retry.pending, timeout=10, what="the retry ended")
    assert attempts.calls == 2


def test_the_retry_gives_up_once_what_it_fixes_has_expired(caplog):
    attempts = Attempts(failures=10**9)
    retry = RetryInBackground("retry-gives-up", attempts, within=lambda: 0.3, every=0.05)
    with caplog.at_level(logging.ERROR, logger="core.retry"):
        retry.later()
        wait_until(lambda: not retry.pending, timeout=10, what="the retry gave up")
    assert attempts.calls >= 2
    assert "retry-gives-up: never landed" in caplog.text
    calls = attempts.calls
    # A failure after it gave up starts it again.
    retry.later()
    wait_until(lambda: attempts.calls > calls, timeout=10, what="a new retry")
    wait_until(lambda: not retry.pending, timeout=10, what="the retry gave up again")


def test_an_attempt_that_raises_is_logged_and_retried(caplog):
    calls = []

    def attempt() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return True

    retry = RetryInBackground("retry-raises", attempt, within=lambda: 60, every=0.05)
    with caplog.at_level(logging.ERROR, logger="core.retry"):
        retry.later()
        wait_until(lambda: not retry.pending, timeout=10, what="the retry ended")
    assert len(calls) == 2
    assert "retry-raises: retry failed" in caplog.text


def test_a_cancelled_retry_forgets_what_was_pending_and_its_thread_ends():
    attempts = Attempts(failures=10**9)
    retry = RetryInBackground("retry-cancelled", attempts, within=lambda: 60, every=0.05)
    retry.later()
    wait_until(lambda: attempts.calls, timeout=10, what="a first attempt")
    retry.cancel()
    assert not retry.pending
    wait_until(lambda: _threads("retry-cancelled") == 0, timeout=10, what="the thread ended")
    calls = attempts.calls
    retry.later()  # a new failure starts a new thread
    wait_until(lambda: attempts.calls > calls, timeout=10, what="a new attempt")
    retry.cancel()


def test_a_write_handed_over_untried_is_attempted_at_once():
    # Its Redis was failing, so the write was not tried: once Redis answers, it lands at the
    # next attempt, which must not wait out the interval (readers elsewhere serve stale copies
    # meanwhile).
    attempts = Attempts(failures=0)
    retry = RetryInBackground("retry-now", attempts, within=lambda: 60, every=30)
    retry.later()  # a failure: the first attempt waits the interval
    assert attempts.calls == 0
    retry.later(tried=False)
    wait_until(lambda: not retry.pending, timeout=5, what="the untried write attempted at once")
    assert attempts.calls == 1
