"""TLS at Nginx, one setting away: the same stack with docker-compose.tls.yml on top and a
certificate from `make tls-dev-cert`. Nginx and web are recreated with TLS on for this module,
then put back as they were."""

import os
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, run, wait_until

FILES = ("-f", "docker-compose.yml", "-f", "docker-compose.tls.yml")


@dataclass(frozen=True)
class Tls:
    port: int
    http_port: int
    cert: Path

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url(path), verify=str(self.cert), timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls(stack, tmp_path_factory) -> Iterator[Tls]:
    cert_dir = tmp_path_factory.mktemp("tls")
    run("make", "-s", "tls-dev-cert", f"TLS_DIR={cert_dir}", cwd=ROOT, timeout=60)
    port = int(os.environ.get("STACK_TLS_PORT", stack.port + 443))
    env = {**stack.env(), "NGINX_TLS_DIR": str(cert_dir), "NGINX_TLS_PORT": str(port)}
    try:
        run("docker", "compose", *FILES, "up", "-d", "--wait", "--wait-timeout", "180",
            "nginx", "web", cwd=ROOT, env=env, timeout=240)  # fmt: skip
        t = Tls(port, stack.port, cert_dir / "tls.crt")
        wait_until(lambda: stack.readyz().status_code == 200, timeout=60, what="/readyz in web")
        wait_until(lambda: t.get("/healthz").status_code == 200, timeout=60, what="HTTPS")
        yield t
    finally:
        stack.up()  # the base file alone: nginx and web recreated without TLS
        stack.wait_ready()


def test_https_works_with_the_generated_certificate_and_sends_hsts(tls):
    response = tls.get("/api/products")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.raw.headers.getlist("Strict-Transport-Security") == [
        "max-age=31536000; includeSubDomains"
    ]
    # Nginx's own answers too.
    assert "Strict-Transport-Security" in tls.get("/media/x").headers


def test_plain_http_is_redirected_to_https(tls):
    response = requests.get(
        f"http://localhost:{tls.http_port}/api/products?page=2", allow_redirects=False, timeout=10
    )
    assert response.status_code == 308
    assert response.headers["Location"] == f"https://localhost:{tls.port}/api/products?page=2"
    assert "Strict-Transport-Security" not in response.headers


def test_django_is_told_https(tls):
    """TLS_ENABLED makes Django redirect any request it believes came over HTTP; a 200 over
    HTTPS means Nginx sent X-Forwarded-Proto: https."""
    assert tls.get("/healthz").status_code == 200
    response = tls.get("/admin/login/", allow_redirects=False)
    assert response.status_code == 200


def test_cookies_are_secure_and_the_session_cookie_http_only(tls, stack):
    session = requests.Session()
    # Per request: a session-wide verify loses to REQUESTS_CA_BUNDLE in the environment.
    login = session.get(tls.url("/admin/login/"), verify=str(tls.cert), timeout=10)
    csrf = next(c for c in session.cookies if c.name == "csrftoken")
    assert csrf.secure
    set_cookie = login.headers["Set-Cookie"]
    assert "Secure" in set_cookie
    assert "SameSite=Lax" in set_cookie

    # A login over HTTPS from a browser: Origin and Referer as it sends them (port included,
    # which Nginx keeps in the Host it passes on, or Django's CSRF check would refuse).
    stack.compose("exec", "-T", "web", "python3", "manage.py", "api_token", "tls-admin",
                  "--create", "--staff", "--password", "tls-admin-pass")  # fmt: skip
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert token
    response = session.post(
        tls.url("/admin/login/"),
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": "tls-admin",
            "password": "tls-admin-pass",
            "next": "/admin/",
        },
        headers={"Origin": tls.url("").rstrip("/"), "Referer": tls.url("/admin/login/")},
        allow_redirects=False,
        verify=str(tls.cert),
        timeout=10,
    )
    assert response.status_code == 302, response.text[:300]
    sessionid = next(c for c in session.cookies if c.name == "sessionid")
    assert sessionid.secure
    assert sessionid.has_nonstandard_attr("HttpOnly")


def handshake(tls: Tls, *, version: ssl.TLSVersion, ciphers: str | None = None) -> str | None:
    """The suite Nginx agreed to, or None if it refused the handshake."""
    context = ssl.create_default_context(cafile=str(tls.cert))
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    try:
        with (
            socket.create_connection(("localhost", tls.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            cipher = conn.cipher()
            return cipher[0] if cipher else None
    except ssl.SSLError:
        return None


# One of each kind a TLS 1.2 client may still offer: RSA key exchange (no forward secrecy),
# CBC with ECDHE, CBC with RSA.
WEAK_TLS12 = (
    "AES128-GCM-SHA256",
    "AES256-SHA256",
    "ECDHE-RSA-AES128-SHA",
    "AES128-SHA",
)


@pytest.mark.parametrize("cipher", WEAK_TLS12)
def test_tls12_refuses_suites_without_forward_secrecy_or_aead(tls, cipher):
    assert handshake(tls, version=ssl.TLSVersion.TLSv1_2, ciphers=cipher) is None


def test_tls12_and_13_agree_on_forward_secret_aead_suites(tls):
    assert handshake(tls, version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    assert handshake(tls, version=ssl.TLSVersion.TLSv1_2) in {
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
    assert handshake(tls, version=ssl.TLSVersion.TLSv1_3) in {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }


def test_tls_below_12_is_refused(tls):
    # The client offers TLS 1.1 for real (security level 0 allows it): the refusal is Nginx's.
    assert handshake(tls, version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT") is None
