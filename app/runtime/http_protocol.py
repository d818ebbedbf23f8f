"""Uvicorn's httptools protocol, sending a response's head together with its body.

Uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, then the body on `http.response.body`: two writes, so two send() system
calls per response. On the loopback or a pod network, each send also runs the receiving side's
TCP path, and Nginx wakes for each segment; `make profile` shows the two writes as the largest
leaves of a cached read (docs/benchmarks/profile.md).

Here a connection's transport holds a write until the next one, which it joins, or until the
end of the event loop's current turn. The head waits for nothing but the rest of the turn: a
response whose body comes later (a stream, a slow view) still gets its head at once. Writes keep
their order, and a close or an end of file sends what is held first.

A request the parser refuses is answered in JSON, as every other error of the API.
"""

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class TurnJoinedTransport(asyncio.Transport):
    """A connection's transport whose writes of one event loop turn go out in one system call."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            # One system call for both (a vectored write), the body not copied.
            self._transport.writelines((held, data))

    def writelines(self, list_of_data: Any) -> None:
        self._flush()
        self._transport.writelines(list_of_data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            # Lost meanwhile: the transport would warn of, or refuse, a write after its close.
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held is not None else 0)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


# Uvicorn's answer to bytes its parser refuses (a control character in a header value, a bad
# request line or body framing) is plain text; every error of this API is JSON
# (core/errors.py), this one included. Nginx passes such a header on, so a client meets it.
_NOT_HTTP = json.dumps(
    {
        "error": {
            "code": "bad_request",
            "message": "The request is not valid HTTP: a header or the request line holds a "
            "character HTTP does not allow (a control character, say), or its body's framing "
            "is malformed.",
        }
    }
).encode()


class HeadWithBodyProtocol(HttpToolsProtocol):
    """HttpToolsProtocol over a TurnJoinedTransport: one write per response of one body chunk,
    and a request its parser refuses answered in JSON."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(TurnJoinedTransport(transport, self.loop))

    def send_400_response(self, msg: str) -> None:
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(_NOT_HTTP),
            b"connection: close\r\n\r\n",
            _NOT_HTTP,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()
