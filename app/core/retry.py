"""Writes to Redis that run after a database commit, so they cannot fail the request that made
them, yet must not be lost to a Redis failure: a cached copy they fix would be answered stale
until it expired. Each is retried in the background until it lands, or until every copy it
fixes has expired on its own (then there is nothing left to fix)."""

import logging
import math
import threading
from collections.abc import Callable
from time import monotonic

from core.tracing import untraced

log = logging.getLogger(__name__)

# Often enough that a copy is fixed within a moment of Redis answering again; each attempt is
# one round trip.
EVERY_SECONDS = 0.5


_instances: list["RetryInBackground"] = []


def retries_pending() -> bool:
    """Some retry of this process is pending: its Redis is failing now. A writer to the same
    Redis hands its write to its own retry at once rather than wait out the client's timeout
    too (a domain's after-commit writes to one cache instance, for one)."""
    return any(retry.pending for retry in _instances)


def retries_cancel() -> None:
    """Cancels every retry of this process (tests use it: a write one test lost must not be
    retried, or make reads skip the cache, in the tests after it)."""
    for retry in _instances:
        retry.cancel()


class RetryInBackground:
    """`attempt()` is retried on a daemon thread of this process every `every` seconds once
    `later()` is called, until it returns True with no failure reported meanwhile, or until
    `within()` seconds (None: no end) have passed since the last failure reported: copies
    stored before it live that long at most. One thread per instance however many failures:
    each attempt carries all that is pending."""

    def __init__(
        self,
        name: str,
        attempt: Callable[[], bool],
        *,
        within: Callable[[], float | None],
        every: float = EVERY_SECONDS,
    ) -> None:
        self.name = name
        self._attempt = attempt
        self._every = every
        self._within = within
        # Both read and written under the lock only, by later() and by the thread's decisions,
        # so a failure reported as the thread gives up or lands is never left without one.
        self._lock = threading.Lock()
        self._pending = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        # Set by later(tried=False): the thread's next attempt is now, not after `every`.
        self._now = threading.Event()
        # Raised by cancel(): a thread started before it ends at its next step.
        self._generation = 0
        _instances.append(self)

    def later(self, *, tried: bool = True) -> None:
        """Call after `attempt` (or the write it retries) failed; tried=False for a write handed
        over without a try (its Redis is known to be failing): the next attempt is at once, so
        a write made as Redis comes back lands then, not an interval later."""
        within = self._within()
        with self._lock:
            self._pending = True
            self._deadline = monotonic() + (math.inf if within is None else within)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=untraced(self._run),
                    args=(self._generation,),
                    name=self.name,
                    daemon=True,
                )
                self._thread.start()
        if not tried:
            self._now.set()

    def cancel(self) -> None:
        """Forgets what is pending, without landing it; its thread ends at its next step."""
        with self._lock:
            self._generation += 1
            self._pending = False
            self._thread = None

    @property
    def pending(self) -> bool:
        """A failure is not yet fixed (its retry runs). Without the lock: one reference read,
        cheap enough for every request."""
        return self._thread is not None

    def _run(self, generation: int) -> None:
        while True:
            self._now.wait(self._every)
            self._now.clear()
            with self._lock:
                if generation != self._generation:
                    return
                self._pending = False
            try:
                landed = self._attempt()
            except Exception:  # a bug in an attempt must not end the retries silently
                log.exception("%s: retry failed", self.name)
                landed = False
            with self._lock:
                if generation != self._generation:
                    return
                # A failure reported during the attempt may be newer than what it carried.
                if landed and not self._pending:
                    self._thread = None
                    log.info("%s: landed after a Redis failure", self.name)
                    return
                self._pending = True
                if monotonic() >= self._deadline:
                    self._thread = None
                    break
        log.error("%s: never landed; what it fixes expired on its own instead", self.name)
