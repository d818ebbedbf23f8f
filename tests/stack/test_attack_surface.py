"""Bad input and attack surface, through Nginx: each gets a clean 4xx JSON and changes nothing.

Elsewhere: unknown Host (test_nginx), body over 1 MB (test_nginx), another customer's order
(test_shop: 404), malformed JSON on products (test_web).
"""

import http.client
import re
import uuid

import pytest
import requests

from tests.support import wait_until

COUNTS = "SELECT (SELECT count(*) FROM shop_product) || '/' || (SELECT count(*) FROM shop_order)"


def counts(stack) -> str:
    return stack.psql("db-primary", COUNTS)


def raw_get(stack, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET with the path exactly as written: requests would normalise the dot segments away."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": "localhost", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        conn.close()


def assert_json_error(status: int, content_type: str, body: str, *expected: int) -> None:
    assert status in expected, (status, body[:200])
    assert content_type.startswith("application/json"), content_type
    assert '"error"' in body
    assert "root:x:0:0" not in body
    assert "SECRET_KEY" not in body


@pytest.fixture(scope="module")
def staff(stack):
    return stack.token("attack-staff", staff=True)


@pytest.fixture(scope="module")
def product(stack, staff):
    body = {"name": f"target-{uuid.uuid4().hex[:6]}", "price": "2.50", "stock": 1000}
    response = stack.post_json("/api/products", body, headers=staff)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_oversized_headers_get_a_json_431_from_nginx(stack):
    for headers in ({"X-Padding": "x" * 9000}, {"Cookie": "a=" + "b" * 9000}):
        response = stack.get("/api/products", headers=headers)
        assert response.status_code == 431
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "header_too_large"
    # Many headers, each small, 40 KB in all: over large_client_header_buffers 4 x 8k.
    many = {f"X-Pad-{i}": "y" * 1000 for i in range(40)}
    assert stack.get("/api/products", headers=many).status_code == 431


def test_a_request_line_over_the_limit_gets_a_json_414(stack):
    status, content_type, body = raw_get(stack, "/api/products?q=" + "a" * 9000)
    assert_json_error(status, content_type, body, 414)


def test_a_request_nginx_cannot_parse_gets_a_json_400(stack):
    import socket

    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400")
    assert "Content-Type: application/json" in answer
    assert '"code":"bad_request"' in answer


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"name": "half', "malformed_json"),
        (b'{"name": "\xff\xfe\xfa", "price": "1.00", "stock": 1}', "malformed_json"),
        (b"\xc3\x28", "malformed_json"),
        (b'{"name": "x", "price": "1.00", "stock": "many"}', "validation_error"),
        (b'["not", "an", "object"]', "validation_error"),
        (b'{"name": "\\u0000", "price": "1.00", "stock": 1}', "validation_error"),
    ],
    ids=["truncated", "invalid-utf8-in-string", "invalid-utf8", "wrong-type", "array", "nul"],
)
def test_malformed_bodies_are_json_400_and_write_nothing(stack, staff, body, code):
    before = counts(stack)
    response = requests.post(
        stack.url("/api/products"),
        data=body,
        headers={"Content-Type": "application/json", **staff},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert counts(stack) == before


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app/config/settings.py",
        "/static/..%2f..%2fapp/config/settings.py",
        "/static/..%2f..%2fetc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/admin/../../../../etc/passwd",
        "/static//etc/passwd",
        "/static/....//....//etc/passwd",
        "/static/admin/css/../../../config/settings.py",
        "/media/",
        "/media/../etc/passwd",
        "/media/reports/1.csv",
        "/protected-media/",
        "/protected-media/reports/1.csv",
        "/protected-media/../etc/passwd",
        "/protected-media/..%2f..%2fetc/passwd",
        "/app/config/settings.py",
        "/.env",
        "/.git/config",
    ],
)
def test_path_traversal_and_direct_file_access_get_json_4xx(stack, path):
    status, content_type, body = raw_get(stack, path)
    assert_json_error(status, content_type, body, 400, 404)


def test_protected_report_files_are_404_even_when_they_exist(stack):
    """A file really on the media volume: only Django's X-Accel-Redirect may send it."""
    if "worker-reports" not in stack.compose("config", "--services").stdout.split():
        pytest.skip("no reports worker (media volume) in this compose file")
    stack.compose(
        "exec",
        "-T",
        "worker-reports",
        "sh",
        "-c",
        "mkdir -p /srv/media/reports && echo secret,data > /srv/media/reports/probe.csv",
    )
    try:
        for path in ("/protected-media/reports/probe.csv", "/media/reports/probe.csv"):
            status, content_type, body = raw_get(stack, path)
            assert_json_error(status, content_type, body, 404)
            assert "secret" not in body
    finally:
        stack.compose(
            "exec", "-T", "worker-reports", "rm", "-f", "/srv/media/reports/probe.csv", check=False
        )


def admin_session(stack, username: str, password: str) -> requests.Session:
    """Logs in through the admin login form, through Nginx, like a browser."""
    session = requests.Session()
    login = session.get(stack.url("/admin/login/"), timeout=10)
    assert login.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert token, "no CSRF token in the admin login form"
    response = session.post(
        stack.url("/admin/login/?next=/admin/"),
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": username,
            "password": password,
            "next": "/admin/",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:300]
    assert "sessionid" in session.cookies
    return session


def create_staff_user(stack, username: str, password: str) -> None:
    stack.compose(
        "exec",
        "-T",
        "web",
        "python3",
        "manage.py",
        "api_token",
        username,
        "--create",
        "--staff",
        "--password",
        password,
    )


def test_a_session_post_without_csrf_token_is_a_json_403(stack, product):
    username, password = f"csrf-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    create_staff_user(stack, username, password)
    session = admin_session(stack, username, password)
    order = {"items": [{"product_id": product, "quantity": 1}]}
    before = counts(stack)

    forged = session.post(stack.url("/api/orders"), json=order, timeout=10)
    assert forged.status_code == 403
    assert forged.headers["Content-Type"].startswith("application/json")
    assert forged.json()["error"]["code"] == "forbidden"
    # A wrong token is no better than none.
    wrong = session.post(
        stack.url("/api/orders"), json=order, headers={"X-CSRFToken": "x" * 64}, timeout=10
    )
    assert wrong.status_code == 403
    assert counts(stack) == before

    # The same session with its token is accepted: it was the missing token that was refused.
    ok = session.post(
        stack.url("/api/orders"),
        json=order,
        headers={"X-CSRFToken": session.cookies["csrftoken"]},
        timeout=10,
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "query",
    [
        "page=1;DROP TABLE shop_product",
        "page=1%27%20OR%20%271%27=%271",
        "page_size=1%20UNION%20SELECT%20password%20FROM%20accounts_user",
        "page=-1",
        "page=99999999999999999999999",
    ],
)
def test_sql_shaped_query_parameters_are_json_400(stack, query):
    before = counts(stack)
    response = stack.get(f"/api/products?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert counts(stack) == before


@pytest.mark.parametrize(
    "name",
    [
        "Robert'); DROP TABLE shop_product;--",
        '" OR ""="',
        "1' OR '1'='1",
        "\\'; SELECT pg_sleep(10); --",
        "<script>alert(1)</script>",
    ],
)
def test_quotes_and_sql_in_names_are_stored_verbatim(stack, staff, name):
    response = stack.post_json(
        "/api/products", {"name": name, "price": "1.00", "stock": 1}, headers=staff
    )
    assert response.status_code == 201, response.text
    product_id = response.json()["id"]
    found = wait_until(
        lambda: (r := stack.get(f"/api/products/{product_id}")).status_code == 200 and r.json(),
        timeout=10,
        what="the product on the replica",
    )
    assert found["name"] == name
    # Served as JSON, never as markup.
    content_type = stack.get(f"/api/products/{product_id}").headers["Content-Type"]
    assert content_type.startswith("application/json")
    assert stack.psql("db-primary", "SELECT to_regclass('shop_product') IS NOT NULL") == "t"
