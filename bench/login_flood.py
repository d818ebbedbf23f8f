"""Clients posting logins for usernames that do not exist, a new one each time: what a password
sprayer spread over many addresses sends. Every attempt costs a password hash (Django hashes
for unknown users too); none is ever stopped by the per-account lock. Standard library only."""

import http.client
import json
import threading
import uuid
from collections import Counter
from urllib.parse import urlsplit


class LoginFlood:
    def __init__(self, base_url: str, *, clients: int) -> None:
        url = urlsplit(base_url)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "LoginFlood":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _client(self) -> None:
        while not self._stop.is_set():
            body = json.dumps({"username": f"flood-{uuid.uuid4().hex}", "password": "guess"})
            conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            try:
                conn.request("POST", "/api/auth/token", body, {"Content-Type": "application/json"})
                status = str(conn.getresponse().status)
            except OSError as exc:
                status = type(exc).__name__
            finally:
                conn.close()
            with self._lock:
                self.statuses[status] += 1
