"""The Nginx image's rendered config: the TLS switch and the trusted X-Forwarded-Proto setting,
checked on a lone container (no web behind it: Nginx's own answers are enough)."""

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from tests.support import ROOT, docker, image, wait_until


@contextmanager
def nginx(*env: str) -> Iterator[str]:
    args = [arg for pair in (("-e", e) for e in env) for arg in pair]
    container = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--add-host", "web:127.0.0.1", "-p", "127.0.0.1::8080", *args, image("nginx"),
    ).stdout.strip()  # fmt: skip
    try:
        port = docker("port", container, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(url + "/nginx-health", timeout=2).ok, timeout=20,
                   what="nginx")  # fmt: skip
        yield url
    finally:
        docker("rm", "-f", container, check=False)


def test_a_trusted_ingress_s_forwarded_proto_is_passed_on():
    with nginx("NGINX_TRUST_FORWARDED_PROTO=true") as url:
        behind_tls = requests.get(
            url + "/media/x", headers={"X-Forwarded-Proto": "https"}, timeout=5
        )
        assert "Strict-Transport-Security" in behind_tls.headers
        plain = requests.get(url + "/media/x", headers={"X-Forwarded-Proto": "http"}, timeout=5)
        assert "Strict-Transport-Security" not in plain.headers
        bogus = requests.get(url + "/media/x", headers={"X-Forwarded-Proto": "gopher"}, timeout=5)
        assert "Strict-Transport-Security" not in bogus.headers


def _hsts(*env: str) -> str | None:
    with nginx("NGINX_TRUST_FORWARDED_PROTO=true", *env) as url:
        headers = requests.get(url + "/media/x", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        return headers.headers.get("Strict-Transport-Security")


def test_hsts_follows_django_s_settings():
    assert _hsts() == "max-age=31536000; includeSubDomains"  # Django's default with TLS on
    assert _hsts("SECURE_HSTS_SECONDS=600") == "max-age=600; includeSubDomains"
    assert _hsts("SECURE_HSTS_SECONDS=600", "SECURE_HSTS_PRELOAD=true") == (
        "max-age=600; includeSubDomains; preload"
    )


def test_a_malformed_hsts_setting_refuses_to_start():
    assert "SECURE_HSTS_SECONDS must be a number" in _exits_with("SECURE_HSTS_SECONDS=1y")


def test_by_default_the_client_s_forwarded_proto_is_ignored():
    with nginx() as url:
        response = requests.get(url + "/media/x", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert "Strict-Transport-Security" not in response.headers
        assert response.json()["error"]["code"] == "not_found"


def test_tls_on_without_a_certificate_refuses_to_start():
    container = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "--add-host", "web:127.0.0.1",
        "-e", "TLS_ENABLED=true", image("nginx"),
    ).stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "false":
                break
            time.sleep(0.5)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "1"
        logs = docker("logs", container).stderr
        assert "is not readable by uid 10002" in logs
        assert "chmod 0640" in logs
    finally:
        docker("rm", "-f", container, check=False)


def test_no_certificate_or_key_is_baked_into_the_image():
    listing = docker(
        "run", "--rm", "--entrypoint", "sh", image("nginx"), "-c",
        "ls -A /etc/nginx/tls 2>/dev/null; find / -xdev -name '*.key' 2>/dev/null; true",
    ).stdout.strip()  # fmt: skip
    assert listing == ""


def _exits_with(*env: str) -> str:
    """Runs the image with this env, expects exit status 1; returns its stderr."""
    args = [arg for pair in (("-e", e) for e in env) for arg in pair]
    container = docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "--add-host", "web:127.0.0.1",
        *args, image("nginx"),
    ).stdout.strip()  # fmt: skip
    try:
        wait_until(
            lambda: (
                docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "false"
            ),
            timeout=20,
            what="nginx exits",
        )
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "1"
        return docker("logs", container).stderr
    finally:
        docker("rm", "-f", container, check=False)


def test_production_without_a_tls_decision_refuses_to_start():
    """Django would redirect every request to an HTTPS nothing serves: README "Deploy"."""
    stderr = _exits_with("APP_ENV=production")
    assert "NGINX_TRUST_FORWARDED_PROTO=true" in stderr
    assert "TLS_ENABLED=false" in stderr
    assert "docker-compose.tls.yml" in stderr


def test_production_starts_with_each_tls_decision():
    with nginx("APP_ENV=production", "NGINX_TRUST_FORWARDED_PROTO=true") as url:
        assert requests.get(url + "/nginx-health", timeout=5).ok
    with nginx("APP_ENV=production", "TLS_ENABLED=false") as url:
        assert requests.get(url + "/nginx-health", timeout=5).ok


def test_readyz_and_metrics_are_answered_404_by_nginx_itself():
    # No web behind this Nginx: a 404 in the API's error shape can only come from Nginx, which
    # keeps the probes' and Prometheus' paths off the public side (they reach web directly).
    with nginx() as url:
        for path in ("/readyz", "/metrics"):
            response = requests.get(url + path, timeout=5)
            assert response.status_code == 404, path
            assert response.headers["Content-Type"] == "application/json"
            error = response.json()["error"]
            assert error == {"code": "not_found", "message": f"Nothing at {path}."}


def locations_without_the_security_headers(conf: str) -> list[str]:
    """The `location` blocks that set a header of their own but do not include the security
    headers again: Nginx inherits add_header only into blocks that have none of their own."""
    missing = []
    for match in re.finditer(r"^\s*location\s+([^{]+)\{", conf, re.M):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(conf[end], 0)
            end += 1
        body = conf[match.end() : end - 1]
        own = re.sub(r"\blocation\b[^{]*\{.*?\}", "", body, flags=re.S)  # nested: checked apart
        if re.search(r"^\s*add_header\b", own, re.M) and "security-headers.conf" not in own:
            missing.append(match[1].strip())
    return missing


def test_every_location_with_headers_of_its_own_sends_the_security_headers_too():
    conf = (ROOT / "nginx" / "nginx.conf").read_text()
    assert locations_without_the_security_headers(conf) == []
    # The check itself, on a block that would lose them.
    planted = "location /x/ {\n    add_header X-Content-Type-Options nosniff always;\n}\n"
    assert locations_without_the_security_headers(planted) == ["/x/"]
