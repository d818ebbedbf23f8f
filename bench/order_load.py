"""Customers placing orders in a closed loop (scenario 15): one thread per customer, each on its
own keep-alive connection with its own bearer token, an Idempotency-Key per request (a new
order each time, as a client that retries safely sends). hey sends one set of headers for all
its clients, so it cannot be several customers or a key per request. Standard library only."""

import http.client
import json
import statistics
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit


class OrderLoad:
    def __init__(self, base_url: str, *, tokens: list[str], product_ids: list[int]) -> None:
        """Customer i orders product_ids[i % len(product_ids)], one line, quantity 1."""
        url = urlsplit(base_url)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        self._tokens = tokens
        self._bodies = [
            json.dumps(
                {"items": [{"product_id": product_ids[i % len(product_ids)], "quantity": 1}]}
            )
            for i in range(len(tokens))
        ]
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.order_ids: list[int] = []
        # time.monotonic() of each 2xx answer: what a window inside the run answered.
        self.answered_at: list[float] = []

    def run(self, seconds: float) -> dict[str, Any]:
        """Every customer posts orders one after another until `seconds` have passed; the
        figures in hey's shape (bench/hey.py parse), so bench/stats.py combines them."""
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=self._client, args=(token, body, deadline), daemon=True)
            for token, body in zip(self._tokens, self._bodies, strict=True)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 60)
        total = time.monotonic() - started
        ok = sum(n for code, n in self.statuses.items() if 200 <= code < 300)
        failed = sum(self.statuses.values()) - ok + sum(self.errors.values())
        ordered = sorted(self.latencies)
        return {
            "total_s": round(total, 3),
            "average_s": statistics.fmean(ordered) if ordered else None,
            "percentiles_s": {p: percentile(ordered, p) for p in (50, 95, 99)} if ordered else {},
            "status": dict(self.statuses),
            "errors": dict(self.errors),
            "ok": ok,
            "failed": failed,
            "requests": ok + failed,
            "ok_rps": round(ok / total, 2) if total else None,
            "orders": len(self.order_ids),
        }

    def _client(self, token: str, body: str, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            try:
                conn.request(
                    "POST",
                    "/api/orders",
                    body,
                    {**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - sent
            with self._lock:
                self.statuses[response.status] += 1
                self.latencies.append(elapsed)
                if 200 <= response.status < 300:
                    self.answered_at.append(time.monotonic())
                if response.status == 201:
                    self.order_ids.append(int(json.loads(answer)["id"]))
        conn.close()


def percentile(ordered: list[float], p: int) -> float:
    """Nearest rank, as hey reports its percentiles."""
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]
