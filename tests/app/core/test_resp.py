"""core.resp: the event loop's pipelined Redis client, against the project's Redis image, and
against small local servers for what Redis itself never does (a garbled or unasked answer)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import uvloop
from testcontainers.core.container import DockerContainer

from core.resp import ErrorReply, PipelinedRedis, RespError
from tests.app.conftest import REDIS_CACHE_PASSWORD, _address


@pytest.fixture
def address(redis_cache_container: DockerContainer) -> tuple[str, int]:
    return _address(redis_cache_container)


@pytest.fixture
def plain(address: tuple[str, int]) -> Any:
    """redis-py, synchronous: sets things up and says what Redis answers."""
    client = redis.Redis(host=address[0], port=address[1], password=REDIS_CACHE_PASSWORD, db=2)
    yield client
    client.close()


def lean(
    address: tuple[str, int], *, password: str | None = REDIS_CACHE_PASSWORD, timeout: float = 0.5
) -> PipelinedRedis:
    return PipelinedRedis(
        host=address[0], port=address[1], password=password, db=2, timeout=timeout
    )


def on_uvloop(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """The workers' loop (Uvicorn's uvloop): its transports are not asyncio's classes."""
    return uvloop.run(scenario())


def test_replies_are_what_redis_answers(address, plain):
    plain.set("resp:page", b"1\n" + b"x" * 100_000)  # longer than one read of the socket
    plain.set("resp:version", 1)
    plain.hset("resp:stock", "n", 7)
    plain.delete("resp:none")

    async def scenario() -> list[Any]:
        client = lean(address)
        try:
            return [
                await client.execute("MGET", "resp:version", "resp:page", "resp:none"),
                await client.execute(b"HGET", "resp:stock", b"n"),
                await client.execute("HGET", "resp:none", "n"),
                await client.execute("INCR", "resp:version"),
                await client.execute("PING"),
                await client.execute("LRANGE", "resp:none", 0, -1),
            ]
        finally:
            await client.aclose()

    assert on_uvloop(scenario) == [
        [b"1", b"1\n" + b"x" * 100_000, None],
        b"7",
        None,
        2,
        b"PONG",
        [],
    ]


def test_concurrent_commands_each_get_their_own_reply_over_one_connection(address, plain):
    plain.mset({f"resp:k{i}": f"v{i}" for i in range(300)})
    before = plain.info("stats")["total_connections_received"]

    async def scenario() -> list[Any]:
        client = lean(address)
        try:
            return await asyncio.gather(*(client.execute("GET", f"resp:k{i}") for i in range(300)))
        finally:
            await client.aclose()

    assert on_uvloop(scenario) == [f"v{i}".encode() for i in range(300)]
    # One connection for 300 concurrent commands (the plain client's INFO adds none: it is
    # connected already).
    assert plain.info("stats")["total_connections_received"] - before == 1


def test_commands_of_one_loop_turn_leave_in_one_write(address, monkeypatch):
    writes: list[int] = []

    async def scenario() -> None:
        client = lean(address)
        await client.execute("PING")  # connected
        transport = client._connection._transport  # type: ignore[union-attr]
        real = transport.writelines
        monkeypatch.setattr(
            transport, "writelines", lambda lines: (writes.append(len(lines)), real(lines))
        )
        await asyncio.gather(*(client.execute("PING") for _ in range(50)))
        await client.execute("PING")
        await client.aclose()

    asyncio.run(scenario())  # a plain asyncio transport: uvloop's attributes are read-only
    assert writes == [50, 1]


def test_an_error_reply_fails_its_command_only(address, plain):
    plain.set("resp:text", "not a number")

    async def scenario() -> tuple[Any, Any]:
        client = lean(address)
        try:
            first = client.execute("INCR", "resp:text")
            second = client.execute("GET", "resp:text")
            results = await asyncio.gather(first, second, return_exceptions=True)
            return results[0], results[1]
        finally:
            await client.aclose()

    error, after = on_uvloop(scenario)
    # Told apart from a failed connection: the caller may read it as its data's fault.
    assert isinstance(error, ErrorReply), error
    assert "not an integer" in str(error)
    assert after == b"not a number"


def test_a_stalled_redis_fails_the_commands_in_flight_after_the_timeout_and_is_left(address, plain):
    plain.set("resp:k", "v")

    async def scenario() -> tuple[list[Any], float, Any]:
        client = lean(address, timeout=0.3)
        await client.execute("PING")  # connected before the pause
        plain.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        started = time.monotonic()
        stalled = await asyncio.gather(
            *(client.execute("GET", "resp:k") for _ in range(5)), return_exceptions=True
        )
        took = time.monotonic() - started
        await asyncio.sleep(1.5)  # the pause is over
        after = await client.execute("GET", "resp:k")
        await client.aclose()
        return stalled, took, after

    stalled, took, after = on_uvloop(scenario)
    assert all(isinstance(error, RespError) for error in stalled), stalled
    assert not any(isinstance(error, ErrorReply) for error in stalled), stalled
    assert "no reply from Redis within 0.3 s" in str(stalled[0])
    # uvloop's timers run on a millisecond clock: one may fire a hair before 0.3 s here.
    assert 0.29 <= took < 1.0
    assert after == b"v"  # a new connection


def test_a_refused_password_fails_the_commands_queued_behind_it(address):
    async def scenario() -> list[Any]:
        client = lean(address, password="wrong")
        try:
            return await asyncio.gather(
                client.execute("PING"), client.execute("PING"), return_exceptions=True
            )
        finally:
            await client.aclose()

    results = on_uvloop(scenario)
    assert all(isinstance(error, RespError) for error in results), results
    assert "Redis refused the connection: WRONGPASS" in str(results[0])


def test_a_port_with_nothing_listening_fails_at_once():
    async def scenario() -> tuple[BaseException, float]:
        client = lean(("127.0.0.1", _unused_port()), timeout=5)
        started = time.monotonic()
        with pytest.raises(RespError) as failed:
            await client.execute("PING")
        return failed.value, time.monotonic() - started

    error, took = on_uvloop(scenario)
    assert "cannot connect to Redis" in str(error)
    assert took < 1


def test_a_server_that_accepts_and_never_answers_costs_the_timeout(blackhole):
    async def scenario() -> float:
        client = lean(("127.0.0.1", blackhole.port), timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RespError, match="no reply"):
            await client.execute("PING")  # behind the AUTH, which is never answered
        return time.monotonic() - started

    assert 0.29 <= on_uvloop(scenario) < 1.0  # uvloop's millisecond timers, as above


def test_a_connect_still_under_way_when_its_connection_fails_is_left_to_finish(monkeypatch):
    # Cancelled, uvloop's name lookup would log its own failure later as a future whose
    # exception was never retrieved: an ERROR line for every stalled connect.
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        ended: list[str] = []

        async def slow_connect(*args: Any, **kwargs: Any) -> Any:
            try:
                await asyncio.sleep(0.4)
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise
            ended.append("finished")
            raise OSError("Name or service not known")

        monkeypatch.setattr(loop, "create_connection", slow_connect)
        client = lean(("redis-cache.invalid", 6379), password=None, timeout=0.1)
        with pytest.raises(RespError, match="no reply"):
            await client.execute("PING")
        await asyncio.sleep(0.5)
        return ended

    assert asyncio.run(scenario()) == ["finished"]


def test_a_connection_redis_drops_fails_its_commands_and_the_next_command_reconnects(
    address, plain
):
    plain.set("resp:k", "v")

    async def scenario() -> tuple[Any, Any]:
        client = lean(address, timeout=5)
        await client.execute("CLIENT", "SETNAME", "resp-dropped")
        blocked = asyncio.ensure_future(client.execute("BLPOP", "resp:never", 0))
        await asyncio.sleep(0.2)  # sent, and Redis holds it
        (ours,) = [c for c in plain.client_list() if c["name"] == "resp-dropped"]
        plain.client_kill_filter(_id=ours["id"])
        failed = await asyncio.gather(blocked, return_exceptions=True)
        after = await client.execute("GET", "resp:k")
        await client.aclose()
        return failed[0], after

    error, after = on_uvloop(scenario)
    assert isinstance(error, RespError)
    assert "lost" in str(error)
    assert after == b"v"


class _Scripted:
    """A local server that answers each command with the next scripted reply (None: holds it)."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = replies
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while self.replies:
            line = await reader.readline()
            if not line:
                break
            for _ in range(int(line[1:]) * 2):  # each argument: its length line, then itself
                await reader.readline()
            reply = self.replies.pop(0)
            if reply is not None:
                writer.write(reply)
        await reader.read()
        writer.close()


@pytest.mark.parametrize("garbled", [b"?what\r\n", b"$abc\r\n", b"*2\r\n-ERR\r\n:1\r\n"])
def test_a_garbled_answer_fails_the_connection_and_the_next_command_reconnects(garbled):
    async def scenario() -> tuple[BaseException, Any, int]:
        server = _Scripted([garbled, b"+PONG\r\n"])
        port = await server.start()
        client = lean(("127.0.0.1", port), password=None)
        client._hello = []  # db 2's SELECT: this server answers only what the test sends
        with pytest.raises(RespError) as failed:
            await client.execute("PING")
        after = await client.execute("PING")
        await client.aclose()
        server.server.close()
        return failed.value, after, server.connections

    error, after, connections = asyncio.run(scenario())
    assert "not RESP" in str(error)
    assert after == b"PONG"
    assert connections == 2


def test_an_answer_to_a_command_never_sent_fails_the_connection():
    async def scenario() -> tuple[Any, Any, int]:
        server = _Scripted([b"+PONG\r\n+EXTRA\r\n", b"+AGAIN\r\n"])
        client = lean(("127.0.0.1", await server.start()), password=None)
        client._hello = []
        first = await client.execute("PING")
        await asyncio.sleep(0.1)  # the extra arrives
        second = await client.execute("PING")  # on a new connection
        await client.aclose()
        server.server.close()
        return first, second, server.connections

    assert asyncio.run(scenario()) == (b"PONG", b"AGAIN", 2)


def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others():
    async def scenario() -> Any:
        server = _Scripted([None, b"$5\r\nfirst\r\n$6\r\nsecond\r\n"])
        client = lean(("127.0.0.1", await server.start()), password=None, timeout=2)
        client._hello = []
        first = asyncio.ensure_future(client.execute("GET", "a"))
        await asyncio.sleep(0.1)  # sent, unanswered
        first.cancel()
        second = await client.execute("GET", "b")  # both replies arrive with this one's
        await client.aclose()
        server.server.close()
        return second

    assert asyncio.run(scenario()) == b"second"


def test_a_closed_client_refuses_commands(address):
    async def scenario() -> None:
        client = lean(address)
        await client.execute("PING")
        await client.aclose()
        assert client.closed
        with pytest.raises(RespError, match="closed"):
            await client.execute("PING")

    on_uvloop(scenario)


def _unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
