"""A real PBKDF2 hasher (few iterations, so tests stay fast) that records how many hashes run at
once and can hold one in progress, to show accounts.throttle's per-process gate."""

import threading
from typing import Any

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class GatedTestHasher(PBKDF2PasswordHasher):
    iterations = 1000
    running = 0
    most_at_once = 0
    hold: threading.Event | None = None
    entered = threading.Event()
    _count_lock = threading.Lock()

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        cls = type(self)
        with cls._count_lock:
            cls.running += 1
            cls.most_at_once = max(cls.most_at_once, cls.running)
        cls.entered.set()
        try:
            if cls.hold is not None:
                cls.hold.wait(timeout=30)
            return super().encode(password, salt, iterations)
        finally:
            with cls._count_lock:
                cls.running -= 1

    @classmethod
    def reset(cls, **kwargs: Any) -> None:
        cls.running = cls.most_at_once = 0
        cls.hold = None
        cls.entered = threading.Event()
