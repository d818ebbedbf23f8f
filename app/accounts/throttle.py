"""What a login may cost. Two limits, both checked before a password is hashed:

- per account: after LOGIN_FREE_FAILURES failed logins for one username, each further failure
  locks that username for a doubling time (LOGIN_BACKOFF_SECONDS up to
  LOGIN_BACKOFF_MAX_SECONDS), whatever address the guesses come from; a success clears it.
  Kept in the "state" cache (the broker's Redis, never evicted: a client who fills the page
  cache cannot lift a lockout); if it is unreachable, logins are not throttled here (Nginx's
  per-address limit still is).
- per process: password hashing is deliberately slow (PBKDF2, and Django hashes for unknown
  usernames too), so a flood of logins could take every core from the readers. One hash at a
  time per process, and after a hash that took t seconds the next waits t * (1/share - 1):
  hashing takes at most LOGIN_HASH_SHARE of the process's time. A login that cannot start within
  LOGIN_HASH_WAIT_SECONDS is turned away as busy, unhashed.
"""

import hashlib
import logging
import threading
from collections.abc import Callable
from time import monotonic, sleep
from typing import TypeVar

from django.conf import settings
from django.core.cache import BaseCache, caches

T = TypeVar("T")
log = logging.getLogger(__name__)
UNAVAILABLE = "login throttle: cache unavailable, account not throttled"


def _cache() -> BaseCache:
    return caches["state"]


def _keys(username: str) -> tuple[str, str]:
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"login:failures:{digest}", f"login:locked:{digest}"


def login_lock_remaining(*, username: str) -> int:
    """Seconds until this username may try again; 0 if it may now."""
    _, locked = _keys(username)
    try:
        # django-redis adds ttl(): 0 if the key is absent, None if it has no expiry.
        remaining = _cache().ttl(locked)  # type: ignore[attr-defined]
    except Exception:  # Redis down: Nginx's per-address limit is what is left
        log.warning(UNAVAILABLE, exc_info=True)
        return 0
    return int(remaining) if remaining else 0


def login_failure_record(*, username: str) -> None:
    try:
        _failure_count(username)
    except Exception:
        log.warning(UNAVAILABLE, exc_info=True)


def _failure_count(username: str) -> None:
    failures, locked = _keys(username)
    try:
        count = _cache().incr(failures)
    except ValueError:  # the first failure in the window
        _cache().set(failures, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
        count = 1
    excess = int(count or 0) - settings.LOGIN_FREE_FAILURES
    if excess > 0:
        backoff = min(
            settings.LOGIN_BACKOFF_SECONDS * 2 ** min(excess - 1, 30),
            settings.LOGIN_BACKOFF_MAX_SECONDS,
        )
        _cache().set(locked, 1, timeout=backoff)


def login_success_record(*, username: str) -> None:
    try:
        _cache().delete_many(list(_keys(username)))
    except Exception:
        log.warning(UNAVAILABLE, exc_info=True)


class _HashGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free_at = 0.0

    def run(self, fn: Callable[[], T], *, share: float, max_wait: float) -> tuple[bool, T | None]:
        """(True, fn()) if a slot came within max_wait; (False, None) otherwise, fn not run."""
        deadline = monotonic() + max_wait
        if not self._lock.acquire(timeout=max_wait):
            return False, None
        try:
            pause = self._free_at - monotonic()
            if pause > 0:
                if monotonic() + pause > deadline:
                    return False, None
                sleep(pause)
            start = monotonic()
            try:
                return True, fn()
            finally:
                now = monotonic()
                self._free_at = now + (now - start) * (1 / share - 1)
        finally:
            self._lock.release()


hash_gate = _HashGate()
