"""A small, bounded load generator for the fault suite: threads with keep-alive sessions
against the stack's Nginx on 127.0.0.1, reads and order writes, every answer kept."""

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Outcome:
    kind: str  # "read", "write", "slow-get", "slow-post"
    status: int  # 0: the connection broke
    seconds: float
    error: str = ""
    key: str = ""


@dataclass
class Traffic:
    """Background traffic until stop() or max_seconds: `readers` threads GET read_path, `writers`
    threads POST one-item orders, each with its own Idempotency-Key."""

    stack: Any
    customer: dict[str, str]
    product_id: int
    readers: int = 3
    writers: int = 1
    read_path: str = "/api/products"
    max_seconds: float = 60
    pause: float = 0.0
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _loop(self, kind: str, index: int) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            n += 1
            key = f"{self.prefix}-{index}-{n}" if kind == "write" else ""
            outcome = send(
                session, self.stack, kind, self.customer, self.product_id, key, self.read_path
            )
            with self._lock:
                self.outcomes.append(outcome)
            if self.pause:
                time.sleep(self.pause)
        session.close()

    def start(self) -> "Traffic":
        for i in range(self.readers):
            self._threads.append(threading.Thread(target=self._loop, args=("read", i)))
        for i in range(self.writers):
            self._threads.append(threading.Thread(target=self._loop, args=("write", i)))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def __enter__(self) -> "Traffic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not ok(o)]

    @property
    def write_keys(self) -> list[str]:
        return [o.key for o in self.outcomes if o.kind == "write"]


def ok(o: Outcome) -> bool:
    return o.status == {"read": 200, "write": 201}.get(o.kind, 200)


def send(
    session: requests.Session,
    stack: Any,
    kind: str,
    customer: dict[str, str],
    product_id: int,
    key: str,
    read_path: str = "/api/products",
) -> Outcome:
    started = time.monotonic()
    try:
        if kind == "write":
            response = session.post(
                stack.url("/api/orders"),
                json={"items": [{"product_id": product_id, "quantity": 1}]},
                headers={**customer, "Idempotency-Key": key},
                timeout=40,
            )
        else:
            response = session.get(stack.url(read_path), timeout=40)
        return Outcome(
            kind,
            response.status_code,
            time.monotonic() - started,
            "" if response.status_code < 400 else response.text[:200],
            key,
        )
    except requests.RequestException as exc:
        return Outcome(kind, 0, time.monotonic() - started, repr(exc)[:200], key)


def lost_writes(stack: Any, traffic: Traffic) -> tuple[int, int]:
    """Retries every failed write with its own Idempotency-Key, as a client would, then counts the
    keys with no order row: (retried, lost)."""
    failed = [o for o in traffic.outcomes if o.kind == "write" and not ok(o)]
    session = requests.Session()
    for o in failed:
        send(session, stack, "write", traffic.customer, traffic.product_id, o.key)
    rows = stack.psql(
        "db-primary",
        f"SELECT idempotency_key FROM shop_order WHERE idempotency_key LIKE '{traffic.prefix}-%'",
    )
    stored = set(rows.split())
    return len(failed), len(set(traffic.write_keys) - stored)


def in_flight(
    stack: Any, *, count: int, seconds: float, method: str = "GET"
) -> tuple[list[threading.Thread], list[Outcome]]:
    """`count` requests to /faults/slow, each `seconds` long, started now in threads."""
    outcomes: list[Outcome] = []

    def one() -> None:
        started = time.monotonic()
        kind = f"slow-{method.lower()}"
        try:
            response = requests.request(
                method, stack.url(f"/faults/slow?seconds={seconds}"), timeout=60
            )
            outcomes.append(
                Outcome(kind, response.status_code, time.monotonic() - started, response.text[:200])
            )
        except requests.RequestException as exc:
            outcomes.append(Outcome(kind, 0, time.monotonic() - started, repr(exc)[:200]))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    return threads, outcomes


def join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(timeout=90)


Probe = Callable[[], bool]
