"""A mail catcher for local use and the stack tests: a real SMTP server that keeps what it
receives in memory, and a small HTTP API to read and clear it.

SMTP on port 1025 (aiosmtpd, from Debian). HTTP on port 8025:
  GET    /health             {"status": "ok"}
  GET    /messages[?to=ADDR] every message received (oldest first), optionally only those to ADDR
  DELETE /messages           forget them all
Nothing is published to the host: the app's containers reach it as mailcatcher:1025 / :8025.
"""

import json
import signal
import sys
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

SMTP_PORT = 1025
HTTP_PORT = 8025
# Oldest messages are dropped past this: memory stays bounded however long it runs.
MAX_MESSAGES = 10_000

_lock = threading.Lock()
_messages: list[dict[str, Any]] = []
_received = 0


class Catcher:
    """aiosmtpd handler: every message accepted with 250 is stored."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        global _received
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        with _lock:
            _received += 1
            _messages.append(
                {
                    "id": _received,
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "from": str(message.get("From", "")),
                    "to": str(message.get("To", "")),
                    "subject": str(message.get("Subject", "")),
                    "message_id": str(message.get("Message-ID", "")),
                    "body": body.get_content() if body is not None else "",
                    "received_at": time.time(),
                }
            )
            del _messages[:-MAX_MESSAGES]
        return "250 Message accepted for delivery"


class Api(BaseHTTPRequestHandler):
    def _json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/health":
            self._json(200, {"status": "ok"})
        elif url.path == "/messages":
            to = parse_qs(url.query).get("to", [None])[0]
            with _lock:
                found = [m for m in _messages if to is None or to in m["rcpt_tos"]]
            self._json(200, found)
        else:
            self._json(404, {"error": "not found"})

    def do_DELETE(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/messages":
            self._json(404, {"error": "not found"})
            return
        with _lock:
            _messages.clear()
        self._json(200, {"cleared": True})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the tests poll it


def main() -> None:
    # PID 1 in its container: without a handler, SIGTERM (docker stop) would be ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    smtp = Controller(Catcher(), hostname="0.0.0.0", port=SMTP_PORT)  # noqa: S104
    smtp.start()
    print(f"mailcatcher: SMTP on {SMTP_PORT}, HTTP on {HTTP_PORT}", flush=True)
    try:
        ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Api).serve_forever()  # noqa: S104
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
