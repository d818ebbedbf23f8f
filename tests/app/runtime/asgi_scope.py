"""An ASGI HTTP scope, and one request's answer, for driving an ASGI app directly in tests."""

from typing import Any

from asgiref.testing import ApplicationCommunicator

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def scope(
    path: str,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes = b"testserver",
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def answer(app: Any, request: dict[str, Any], body: bytes = b"") -> Answer:
    """The status, headers (names lower-cased) and whole body `app` answers to one request."""
    communicator = ApplicationCommunicator(app, request)
    await communicator.send_input({"type": "http.request", "body": body})
    start = await communicator.receive_output(20)
    content = b""
    while True:
        message = await communicator.receive_output(20)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(20)
    return start["status"], [(k.lower(), v) for k, v in start["headers"]], content
