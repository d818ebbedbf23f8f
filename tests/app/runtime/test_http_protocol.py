"""runtime/http_protocol.py: a response's head leaves with its body, in one write, and nothing
else about HTTP changes. Served over real sockets on uvloop, as a worker serves; the writes are
counted on the connection's own transport, under the protocol."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from runtime.http_protocol import HeadWithBodyProtocol, TurnJoinedTransport
from runtime.workers import UvicornWorker

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Counted:
    """The connection's transport, counting its writes (every other call passes through)."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def writelines(self, list_of_data: list[bytes]) -> None:  # one system call (writev)
        self._writes.append(b"".join(list_of_data))
        self._transport.writelines(list_of_data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def counting(protocol: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Counting(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(Counted(transport, writes))

    return Counting


async def serving(app: App, protocol: type[HttpToolsProtocol]) -> tuple[asyncio.Server, int]:
    config = Config(app=app, lifespan="off", log_config=None, access_log=False)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: protocol(config=config, server_state=state, app_state={}, _loop=loop),
        "127.0.0.1",
        0,
    )
    return server, server.sockets[0].getsockname()[1]


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), 5)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b"hello " + scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("protocol", "writes_per_response"), [(HttpToolsProtocol, 2), (HeadWithBodyProtocol, 1)]
)
def test_a_response_goes_out_in_one_write_where_uvicorn_makes_two(protocol, writes_per_response):
    writes: list[bytes] = []

    async def main() -> list[tuple[bytes, bytes]]:
        server, port = await serving(hello, counting(protocol, writes))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for path in ("/one", "/two", "/three"):  # one keep-alive connection
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answers.append(await read_response(reader))
        writer.close()
        server.close()
        return answers

    answers = uvloop.run(main())

    assert [body for _, body in answers] == [b"hello /one", b"hello /two", b"hello /three"]
    assert all(head.startswith(b"HTTP/1.1 200 OK\r\n") for head, _ in answers)
    assert len(writes) == 3 * writes_per_response
    assert b"".join(writes) == b"".join(head + body for head, body in answers)


def test_the_default_worker_serves_with_it():
    config = Config(app=hello, **UvicornWorker.CONFIG_KWARGS)
    config.load()

    assert config.http_protocol_class is HeadWithBodyProtocol


def test_a_head_whose_body_comes_later_is_sent_without_waiting_for_it():
    writes: list[bytes] = []

    async def main() -> tuple[bytes, bytes]:
        go = asyncio.Event()

        async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"4")],
                }
            )
            await go.wait()
            await send({"type": "http.response.body", "body": b"late"})

        server, port = await serving(slow, counting(HeadWithBodyProtocol, writes))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(
            reader.readuntil(b"\r\n\r\n"), 5
        )  # the body is still held back
        go.set()
        body = await asyncio.wait_for(reader.readexactly(4), 5)
        writer.close()
        server.close()
        return head, body

    head, body = uvloop.run(main())

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b"late"
    assert writes == [head, b"late"]


def test_a_streamed_body_arrives_whole_and_in_order():
    chunks = [b"a" * 10, b"b" * 70_000, b"c", b"d" * 5]

    async def main() -> bytes:
        async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})  # chunked
            for index, chunk in enumerate(chunks):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if index % 2:
                    await asyncio.sleep(0.01)  # some chunks in a later turn of the loop
            await send({"type": "http.response.body", "body": b""})

        server, port = await serving(stream, HeadWithBodyProtocol)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        received = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        writer.close()
        server.close()
        return received

    received = uvloop.run(main())

    expected = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    assert received == expected


def test_an_app_failing_after_its_head_closes_the_connection_with_the_head_sent():
    async def main() -> bytes:
        async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"9")],
                }
            )
            raise RuntimeError("after the head")

        server, port = await serving(failing, HeadWithBodyProtocol)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        writer.close()
        server.close()
        return received

    received = uvloop.run(main())

    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"content-length: 9\r\n\r\n")  # the head, and no body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Foo: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["control", "delete", "chunk"],
)
def test_a_request_the_parser_refuses_is_a_json_400_that_closes_the_connection(request_bytes):
    async def main() -> tuple[bytes, bytes, bytes]:
        server, port = await serving(hello, HeadWithBodyProtocol)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        head, body = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 5)  # b"": closed after it
        writer.close()
        server.close()
        return head, body, rest

    head, body, rest = uvloop.run(main())

    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"content-type: application/json\r\n" in head
    assert b"connection: close\r\n" in head
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request"
    assert "not valid HTTP" in error["message"]
    assert rest == b""


def test_a_request_expecting_100_continue_gets_it_then_its_answer():
    async def main() -> tuple[bytes, bytes, bytes]:
        async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
            message = await receive()
            body = message["body"]
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})

        server, port = await serving(echo, HeadWithBodyProtocol)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"hello")
        head, body = await read_response(reader)
        writer.close()
        server.close()
        return interim, head, body

    interim, head, body = uvloop.run(main())

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b"hello"


def test_a_write_held_when_the_connection_is_lost_is_dropped_quietly():
    """Aborted before the turn ends, or the connection lost under it (the transport closed,
    as connection_lost does): the held write is dropped, and nothing complains of a write on
    a closed transport."""

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        accepted: asyncio.Queue[asyncio.Transport] = asyncio.Queue()

        class Accepting(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.put_nowait(transport)  # type: ignore[arg-type]

        server = await loop.create_server(Accepting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        aborted = TurnJoinedTransport(await accepted.get(), loop)
        aborted.write(b"held")
        aborted.abort()  # before the turn ends
        lost = await accepted.get()
        joined = TurnJoinedTransport(lost, loop)
        joined.write(b"held too")
        lost.close()  # under it, before the turn ends
        await asyncio.sleep(0.05)
        received = [await reader.read() for reader, _ in clients]
        for _, writer in clients:
            writer.close()
        server.close()
        assert received == [b"", b""]
        return errors

    assert uvloop.run(main()) == []
