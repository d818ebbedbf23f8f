"""Nginx in front: static files, request IDs, headers, and the bad-input cases it owns."""

import gzip
import json
import socket
import uuid

import pytest
import requests

from tests.support import docker, image


def static_path() -> str:
    manifest = docker(
        "run", "--rm", image("web"), "cat", "/app/staticfiles/staticfiles.json"
    ).stdout
    return "/static/" + json.loads(manifest)["paths"]["admin/css/base.css"]


def test_static_files_are_served_by_nginx_with_long_cache_and_gzip(stack):
    response = stack.get(static_path(), headers={"Accept-Encoding": "gzip"}, stream=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=31536000, public, immutable"
    assert "Expires" in response.headers
    assert response.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(response.raw.read())
    assert b"body" in body
    # Served from Nginx's own files: Django, which times every answer, never saw it.
    assert "X-Request-Duration" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/media/x", "/nope"])
def test_request_id_is_minted_or_kept_and_returned(stack, path):
    # Django's answers and Nginx's own (the 404s of /readyz, /metrics and /media/) alike.
    minted = stack.get(path).headers["X-Request-ID"]
    assert len(minted) == 32
    mine = str(uuid.uuid4())
    assert stack.get(path, headers={"X-Request-ID": mine}).headers["X-Request-ID"] == mine


def raw_answer(stack, request_line: str, *headers: str, host: bool = True) -> tuple[bytes, bytes]:
    """Nginx's answer to a request line and headers sent as they are: (head, body)."""
    lines = [request_line, *([f"Host: 127.0.0.1:{stack.port}"] if host else []), *headers]
    request = "\r\n".join([*lines, "Connection: close", "", ""])
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(request.encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def test_a_header_nginx_passes_on_and_uvicorn_refuses_is_a_json_400(stack):
    """A control character in a header value: Nginx forwards it, Uvicorn's parser refuses the
    request; the client reads JSON, as for every other error (runtime/http_protocol.py)."""
    head, body = raw_answer(stack, "GET /api/products HTTP/1.1", "X-Foo: a\x01b")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_head_is_answered_as_get_with_its_headers_and_no_body(stack):
    """Through Nginx and Uvicorn, the raw bytes: HEAD on an API route that serves GET gets the
    GET's status and headers (here its JSON 401: staff only), and nothing after them."""
    head, body = raw_answer(stack, "HEAD /api/tasks/x HTTP/1.1")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert b"content-type: application/json" in head.lower()
    assert body == b""
    assert stack.get("/api/tasks/x").status_code == 401


def test_nginxs_own_405s_are_json_and_name_what_the_path_serves(stack):
    """TRACE and methods beyond the seven the app may serve, anywhere, and a static file's methods
    beyond GET and HEAD, never reach Django: Nginx answers the JSON 405 with the methods of the
    path (nginx.conf, $nginx_allow), typed JSON whatever the path's extension."""
    static = requests.put(stack.url("/static/admin/css/base.css"), timeout=10)
    assert static.status_code == 405
    assert static.headers["Allow"] == "GET, HEAD"
    assert static.headers["Content-Type"] == "application/json"  # not the file's text/css
    assert static.json()["error"]["code"] == "method_not_allowed"
    # Uvicorn's parser refuses a method it does not know with a plain-text 400 (FOO); one it
    # knows (PROPFIND) Django would refuse with its own JSON 405: both stop at Nginx.
    # Every JSON answer of Nginx's own is typed JSON, whatever the path's extension.
    for path, status in (("/media/x.css", 404), ("/__debug__/x.js", 404)):
        answer = stack.get(path)
        assert (answer.status_code, answer.headers["Content-Type"]) == (status, "application/json")
    too_large = requests.post(stack.url("/static/x.css"), data=b"x" * (1024 * 1024 + 1), timeout=10)
    assert (too_large.status_code, too_large.headers["Content-Type"]) == (413, "application/json")
    for method in ("TRACE", "FOO", "PROPFIND"):
        refused = requests.request(method, stack.url("/api/products"), timeout=10)
        assert refused.status_code == 405, method
        assert refused.headers["Allow"] == "GET, HEAD, POST, PATCH, DELETE"
        assert refused.json()["error"]["code"] == "method_not_allowed"


def test_nginxs_own_errors_are_json_too(stack):
    # A directory of the static files, with or without its slash: no such file, as JSON (was
    # Nginx's HTML 403, or a year-cached HTML 301 to the container's own port).
    for path in ("/static/", "/static/admin/", "/static/admin", "/static/admin/css"):
        answer = stack.get(path, allow_redirects=False)
        assert answer.status_code == 404, path
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json()["error"]["code"] == "not_found"
        assert "Location" not in answer.headers
    file = static_path()
    for headers, status, code in (
        ({"If-Match": '"nope"'}, 412, "precondition_failed"),
        # Uncompressed: Nginx applies no Range to a gzipped answer.
        (
            {"Range": "bytes=999999999-", "Accept-Encoding": "identity"},
            416,
            "range_not_satisfiable",
        ),
    ):
        answer = stack.get(file, headers=headers)
        assert answer.status_code == status, headers
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json()["error"]["code"] == code
    assert stack.get(file).status_code == 200  # the file itself, unconditionally
    # A transfer coding Nginx does not decode (was HTML 501).
    head, body = raw_answer(stack, "POST /api/orders HTTP/1.1", "Transfer-Encoding: gzip")
    assert head.startswith(b"HTTP/1.1 501"), head
    assert json.loads(body)["error"]["code"] == "not_implemented"
    # No Host at all (HTTP/1.0): Nginx's JSON 400, Django never sees it.
    head, body = raw_answer(stack, "GET /healthz HTTP/1.0", host=False)
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["error"]["code"] == "bad_request"
    # A request line naming an HTTP version Nginx does not speak (was Nginx's HTML 505).
    for version in ("HTTP/2.0", "HTTP/9.9"):
        head, body = raw_answer(stack, f"GET /api/products {version}")
        assert head.startswith(b"HTTP/1.1 505"), head
        assert b"content-type: application/json" in head.lower()
        assert json.loads(body)["error"]["code"] == "http_version_not_supported"


def test_server_header_has_no_version(stack):
    assert stack.get("/healthz").headers["Server"] == "nginx"


def test_unknown_host_gets_a_json_400(stack):
    response = stack.get("/api/products/1", headers={"Host": "attacker.example"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_unknown_path_gets_a_json_404(stack):
    response = stack.get("/definitely/not/here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_body_over_the_limit_gets_a_json_413_from_nginx(stack):
    response = requests.post(
        stack.url("/api/products"),
        data=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "payload_too_large"


def test_only_nginx_is_published_and_only_on_loopback(stack):
    published = {}
    for line in stack.compose("ps", "--format", "json").stdout.splitlines():
        container = json.loads(line)
        ports = [p for p in container.get("Publishers") or [] if p.get("PublishedPort")]
        if ports:
            published[container["Service"]] = ports
    assert set(published) == {"nginx"}
    assert {p["URL"] for p in published["nginx"]} == {"127.0.0.1"}
