"""A lean Redis client for a hot read on the event loop: one connection per loop, pipelined.

redis-py's asyncio client spends most of a small command's CPU around it: a pool checkout and
release, command packing, its RESP3 parser, and an asyncio.timeout per command. Here a command
is one bytes write and one future. Commands of one loop turn leave in one write, and the replies
resolve the futures in the order they were sent (Redis answers a connection's commands in
order).

The failure rules are those of the redis-py asyncio client it replaced, as its callers use it:
no retry, because the caller's fallback (the database) is the retry. A connection that goes
`timeout` seconds with commands waiting and no reply completing (connecting included) fails
every command in flight and is dropped, and so is one that answers something other than RESP.
The next command opens a new connection.
"""

import asyncio
from collections import deque
from typing import cast

type Reply = bytes | int | list["Reply"] | None


class RespError(Exception):
    """Redis answered an error (its message), or the connection broke or stalled."""


class ErrorReply(RespError):
    """Redis answered this command with an error (WRONGTYPE, a script's): the connection is
    sound, and the caller may tell its data from an outage."""


class _Malformed(Exception):
    pass


def _parse(buffer: bytearray, start: int) -> tuple[Reply | RespError, int] | None:
    """The reply at `start` and the offset after it; None while it is incomplete."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = buffer[start], bytes(buffer[start + 1 : end])
    after = end + 2
    if kind == 36:  # $ bulk string
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return None
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == 42:  # * array
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            parsed = _parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            if isinstance(item, RespError):
                raise _Malformed("an error inside an array")
            items.append(item)
        return items, after
    if kind == 43:  # + simple string
        return line, after
    if kind == 45:  # - error
        return ErrorReply(line.decode(errors="replace")), after
    if kind == 58:  # : integer
        return int(line), after
    raise _Malformed(f"a reply starting with {bytes([kind])!r}")


def pack(*args: bytes | str | int) -> bytes:
    """A command in RESP, as Redis reads it from a client."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        # None: a reply the connection itself asked for (AUTH, SELECT), which must be OK.
        self._waiting: deque[asyncio.Future[Reply] | None] = deque()
        self._buffer = bytearray()
        self._progress = 0.0  # when a reply last completed, or commands began to wait
        self._timer: asyncio.TimerHandle | None = None
        self.failed = False
        # Held, since the loop keeps tasks weakly; never cancelled: uvloop's name lookup, cut
        # short, logs its own failure as an unretrieved future. Connected late, the connection
        # made for nothing is closed (connection_made).
        self.opening: asyncio.Task[None] | None = None

    def send(self, command: bytes, *, hello: bool = False) -> "asyncio.Future[Reply] | None":
        future: asyncio.Future[Reply] | None = None if hello else self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()
            if self._timer is None:
                self._timer = self._loop.call_at(self._progress + self._timeout, self._check)
        self._waiting.append(future)
        if not self._out and self._transport is not None:
            self._loop.call_soon(self._flush)
        self._out.append(command)
        return future

    def _flush(self) -> None:
        if self._out and self._transport is not None and not self.failed:
            self._transport.writelines(self._out)
        self._out.clear()

    def _check(self) -> None:
        # One timer per connection, moved on lazily: replies only note the time.
        self._timer = None
        if self.failed or not self._waiting:
            return
        deadline = self._progress + self._timeout
        if self._loop.time() >= deadline:
            self.fail(RespError(f"no reply from Redis within {self._timeout} s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check)

    def fail(self, error: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        while self._waiting:
            future = self._waiting.popleft()
            if future is not None and not future.done():
                future.set_exception(error)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self._transport
        if self.failed:
            transport.abort()
        elif self._out:
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespError(f"connection to Redis lost: {exc or 'closed by Redis'}"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        try:
            while self._waiting:
                parsed = _parse(buffer, offset)
                if parsed is None:
                    break
                reply, offset = parsed
                future = self._waiting.popleft()
                if future is None:
                    if isinstance(reply, RespError):
                        self.fail(RespError(f"Redis refused the connection: {reply}"))
                        return
                    continue
                if future.done():  # its caller was cancelled: the reply is read and dropped
                    continue
                if isinstance(reply, RespError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (_Malformed, ValueError) as error:
            self.fail(RespError(f"Redis answered something that is not RESP: {error}"))
            return
        if offset:
            del buffer[:offset]
            self._progress = self._loop.time()
        if buffer and not self._waiting:
            self.fail(RespError("Redis answered a command that was not sent"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.fail(RespError("connection closed"))


class PipelinedRedis:
    """Commands to one Redis database over one pipelined connection of the running loop."""

    def __init__(
        self, *, host: str, port: int, password: str | None, db: int, timeout: float
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self._hello = [pack("AUTH", password)] if password else []
        if db:
            self._hello.append(pack("SELECT", db))
        self._timeout = timeout
        self._connection: _Connection | None = None
        self.closed = False

    async def execute(self, *args: bytes | str | int) -> Reply:
        """The command's reply; RespError for Redis's error, a broken or stalled connection."""
        return await cast("asyncio.Future[Reply]", self._open().send(pack(*args)))

    def _open(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.failed:
            return connection
        if self.closed:
            raise RespError("client closed")
        loop = asyncio.get_running_loop()
        connection = self._connection = _Connection(loop, self._timeout)
        # Sent first on the new connection, so answered before any command: a refusal fails
        # the connection and every command queued behind it.
        for hello in self._hello:
            connection.send(hello, hello=True)
        connection.opening = loop.create_task(self._connect(connection))
        return connection

    async def _connect(self, connection: _Connection) -> None:
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: connection, self.host, self.port
            )
        except Exception as error:  # refused, unresolved, unreachable: a failed connection
            connection.fail(RespError(f"cannot connect to Redis: {error}"))
        connection.opening = None

    async def aclose(self) -> None:
        self.closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
