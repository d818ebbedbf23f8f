"""A mail catcher for local use and the stack tests: a real SMTP server that keeps what it
receives in memory, and a small HTTP API to read and clear it.

SMTP on port 1025 (aiosmtpd, from Debian). HTTP on port 8025:
  GET    /                   a page listing every message (newest first): subject, from, to, body
  GET    /health             {"status": "ok"}
  GET    /messages[?to=ADDR] every message received (oldest first), optionally only those to ADDR
  GET    /quits              the connections that ended with QUIT (peer), oldest first
  DELETE /messages           forget them all, and the QUITs
Each message says which connection it came over (peer: the client's address and port). A
recipient @refused.invalid is refused with 550, as a real server refuses an address, and one
@slow.invalid is answered after SLOW_SECONDS, as a server that stalls mid-exchange.
The app's containers reach it as mailcatcher:1025 / :8025; only `make dev`
(docker-compose.dev.yml) publishes the page, on 127.0.0.1.
"""

import asyncio
import html
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
# Reserved for examples that must not resolve (RFC 2606).
REFUSED_DOMAIN = "refused.invalid"
SLOW_DOMAIN = "slow.invalid"
SLOW_SECONDS = 5.0

_lock = threading.Lock()
_messages: list[dict[str, Any]] = []
_quits: list[str] = []
_received = 0


class Catcher:
    """aiosmtpd handler: every message accepted with 250 is stored as received, and read out
    (parsed) when first asked for: receiving stays cheap when a load test sends hundreds. A
    recipient at REFUSED_DOMAIN is refused (550), as a real server refuses an address: the
    senders' tests of a refusal."""

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower().endswith("@" + REFUSED_DOMAIN):
            return "550 5.1.1 Recipient refused here (mail catcher)"
        if address.lower().endswith("@" + SLOW_DOMAIN):
            await asyncio.sleep(SLOW_SECONDS)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        # Which connections were closed politely, not dropped: the senders' tests of how they
        # end one.
        with _lock:
            _quits.append(_peer(session))
            del _quits[:-MAX_MESSAGES]
        return "221 Bye"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        global _received
        with _lock:
            _received += 1
            _messages.append(
                {
                    "id": _received,
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    # The client's address and port: messages sent over one connection share it.
                    "peer": _peer(session),
                    "received_at": time.time(),
                    "raw": envelope.original_content or envelope.content,
                }
            )
            del _messages[:-MAX_MESSAGES]
        return "250 Message accepted for delivery"


def _peer(session: Any) -> str:
    return "{}:{}".format(*session.peer[:2])


def read_out(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored message with its headers and plain-text body, parsed once (under _lock). One
    the parser cannot read keeps its fields empty and says why in its body."""
    raw = stored.get("raw")
    if raw is None:
        return stored
    fields = {"from": "", "to": "", "subject": "", "message_id": "", "body": ""}
    try:
        message = message_from_bytes(raw, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        fields = {
            "from": str(message.get("From", "")),
            "to": str(message.get("To", "")),
            "subject": str(message.get("Subject", "")),
            "message_id": str(message.get("Message-ID", "")),
            "body": body.get_content() if body is not None else "",
        }
    except Exception as exc:  # noqa: BLE001 - any message a client sends must stay readable
        fields["body"] = f"(not parsed: {type(exc).__name__}: {exc})"
    stored.update(fields)
    del stored["raw"]
    return stored


# Self-contained: no script, styles inline, nothing fetched from elsewhere.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mail catcher ({count})</title>
<meta http-equiv="refresh" content="10">
<style>body{{font:14px sans-serif;margin:1em 2em}}
article{{border-top:1px solid #ccc;padding:.5em 0}}
dl{{display:grid;grid-template-columns:5em 1fr;margin:0}}dt{{color:#666}}dd{{margin:0}}
pre{{white-space:pre-wrap;background:#f6f6f6;padding:.5em}}</style></head>
<body><h1>mail catcher: {count} messages</h1>
<p>Newest first; the page reloads every 10 s. As JSON: <a href="/messages">/messages</a>.</p>
{messages}</body></html>
"""
MESSAGE = """<article id="message-{id}"><h2>{subject}</h2><dl>
<dt>From</dt><dd>{from_}</dd><dt>To</dt><dd>{to}</dd><dt>Received</dt><dd>{received}</dd></dl>
<pre>{body}</pre></article>
"""


def render_page(messages: list[dict[str, Any]]) -> str:
    e = html.escape
    items = "".join(
        MESSAGE.format(
            id=m["id"],
            subject=e(m["subject"] or "(no subject)"),
            from_=e(m["from"] or m["mail_from"]),
            to=e(m["to"] or ", ".join(m["rcpt_tos"])),
            received=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m["received_at"])),
            body=e(m["body"]),
        )
        for m in reversed(messages)
    )
    return PAGE.format(count=len(messages), messages=items or "<p>No messages yet.</p>")


class Api(BaseHTTPRequestHandler):
    def _html(self, status: int, page: str) -> None:
        body = page.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path == "/":
            with _lock:
                page = render_page([read_out(m) for m in _messages])
            self._html(200, page)
        elif url.path == "/health":
            self._json(200, {"status": "ok"})
        elif url.path == "/messages":
            to = parse_qs(url.query).get("to", [None])[0]
            with _lock:
                found = [read_out(m) for m in _messages if to is None or to in m["rcpt_tos"]]
            self._json(200, found)
        elif url.path == "/quits":
            with _lock:
                quits = list(_quits)
            self._json(200, quits)
        else:
            self._json(404, {"error": "not found"})

    def do_DELETE(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/messages":
            self._json(404, {"error": "not found"})
            return
        with _lock:
            _messages.clear()
            _quits.clear()
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
