"""The README's one-machine production deploy, as written: `.env` from `.env.example` with
APP_ENV=production and fresh secrets, then `docker compose up -d --wait`, in the three ways README
"Deploy" describes: TLS at Nginx (docker-compose.tls.yml, named by COMPOSE_FILE in `.env`),
plain HTTP behind a TLS-terminating load balancer (NGINX_TRUST_FORWARDED_PROTO=true; the test
sends the balancer's X-Forwarded-Proto: https), and TLS_ENABLED=false. Each runs the README's
tour and `check --deploy`.

Each deploy is its own compose project (STACK_PROJECT plus a suffix), up only for its test and
removed with its volumes. Nothing of this shell's environment reaches compose but the image tag
and the build's CA: the env file is all the configuration, as on a fresh machine.
"""

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from tests.stack.conftest import PORT, PROJECT, READYZ
from tests.support import ROOT, run, wait_until

# The mail catcher's messages, read from inside web as the README does.
MAILBOX = (
    "import urllib.request as u; "
    "print(u.urlopen('http://mailcatcher:8025/messages?to=alice@example.com', timeout=5)"
    ".read().decode())"
)


@dataclass(frozen=True)
class Deploy:
    env_file: Path
    base_url: str
    # Headers every request carries (the load balancer's), and the CA to trust for HTTPS.
    headers: dict[str, str]
    verify: str | bool

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # BUILD_CA_BUNDLE: how the README builds behind a TLS-intercepting proxy (--build).
        passed = {"PATH", "HOME", "DOCKER_HOST", "BUILD_CA_BUNDLE"}
        clean = {k: v for k, v in os.environ.items() if k in passed}
        return run(
            "docker", "compose", "--env-file", str(self.env_file), *args,
            check=check, timeout=400, cwd=ROOT, env=clean,
        )  # fmt: skip

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.request(
            method, self.base_url + path, headers=headers, verify=self.verify,
            allow_redirects=False, timeout=10, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    def token(self, username: str, *, staff: bool = False) -> dict[str, str]:
        args = ["exec", "-T", "web", "python3", "manage.py", "api_token", username, "--create"]
        token = self.compose(*args, *(["--staff"] if staff else [])).stdout.strip()
        return {"Authorization": f"Bearer {token}"}


def env_file(directory: Path, overrides: dict[str, str]) -> Path:
    """`.env.example` with the overrides, as an operator edits a copy of it."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={overrides.pop(name)}" if name in overrides else line)
    lines += [f"{name}={value}" for name, value in overrides.items()]
    path = directory / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def production(project: str, port: int, **overrides: str) -> dict[str, str]:
    return {
        "COMPOSE_PROJECT_NAME": project,
        "APP_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DB_PASSWORD": secrets.token_urlsafe(24),
        "REPLICATION_PASSWORD": secrets.token_urlsafe(24),
        "REDIS_PASSWORD": secrets.token_urlsafe(24),
        "REDIS_CACHE_PASSWORD": secrets.token_urlsafe(24),
        "FLOWER_PASSWORD": secrets.token_urlsafe(24),
        "MONITORING_DB_PASSWORD": secrets.token_urlsafe(24),
        "PGBOUNCER_STATS_PASSWORD": secrets.token_urlsafe(24),
        "NGINX_PORT": str(port),
        # The images `make test` built; a deploy adds --build.
        "IMAGE_TAG": os.environ.get("IMAGE_TAG", "dev"),
        **overrides,
    }


@contextmanager
def deployed(deploy: Deploy) -> Iterator[Deploy]:
    deploy.compose("down", "--volumes", "--remove-orphans", check=False)
    try:
        # As the README deploys: --build (the images `make test` built, so from its cache).
        result = deploy.compose(
            "up", "-d", "--build", "--wait", "--wait-timeout", "240", check=False
        )
        if result.returncode != 0:
            logs = deploy.compose("logs", "--no-color", "--tail", "30", check=False).stdout
            raise AssertionError(f"compose up failed:\n{result.stderr}\n--- logs ---\n{logs}")
        yield deploy
    finally:
        deploy.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)


def tour(deploy: Deploy, *, deploy_warnings: frozenset[str] = frozenset()) -> None:
    """README "Try it": probes, a product by a staff token, list and detail, an order, a
    report computed and downloaded, both emails in the mail catcher; then `check --deploy`
    finds nothing but the warnings named (not run: `seed` and `createsuperuser`)."""

    # A redirect here (to https, or a loop) would be a 3xx: allow_redirects is off.
    def ready() -> bool:
        # Probes reach web itself; through Nginx /readyz is a 404.
        out = deploy.compose("exec", "-T", "web", "python3", "-c", READYZ, "10", check=False)
        return (
            out.returncode == 0
            and json.loads(out.stdout.splitlines()[-1])["body"].get("status") == "ok"
        )

    wait_until(ready, timeout=90, what="/readyz ok in web")
    assert deploy.request("GET", "/healthz").status_code == 200
    assert deploy.request("GET", "/readyz").status_code == 404

    staff = deploy.token("admin", staff=True)
    created = deploy.request(
        "POST", "/api/products", headers=staff,
        json={"name": "Teapot", "price": "3.20", "stock": 4},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]

    listed = deploy.request("GET", "/api/products")
    assert listed.status_code == 200, listed.text
    assert [p["name"] for p in listed.json()["items"]] == ["Teapot"]
    # The detail reads the replica: it may lag the write by a moment.
    wait_until(
        lambda: deploy.request("GET", f"/api/products/{product_id}").status_code == 200,
        timeout=30,
        what="the product on the replica",
    )

    me = deploy.token("alice")
    deploy.compose(
        "exec", "-T", "web", "python3", "manage.py", "shell", "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.filter(username='alice').update(email='alice@example.com')",
    )  # fmt: skip
    order = deploy.request(
        "POST", "/api/orders", headers={**me, "Idempotency-Key": "k1"},
        json={"items": [{"product_id": product_id, "quantity": 1}]},
    )  # fmt: skip
    assert order.status_code == 201, order.text
    mine = deploy.request("GET", "/api/orders", headers=me)
    assert mine.status_code == 200
    assert mine.json()["count"] == 1

    # This year's report of her orders, computed by the reports worker, downloaded via Nginx.
    year = datetime.now(UTC).year
    asked = deploy.request(
        "POST", "/api/reports", headers=me,
        json={"date_from": f"{year}-01-01", "date_to": f"{year}-12-31"},
    )  # fmt: skip
    assert asked.status_code == 202, asked.text
    status_url = f"/api/reports/{asked.json()['id']}"
    done = wait_until(
        lambda: (
            (r := deploy.request("GET", status_url, headers=me).json())["state"] == "done" and r
        ),
        timeout=90,
        what="the report done",
    )
    assert done["order_count"] == 1, done
    csv = deploy.request("GET", done["download_url"], headers=me)
    assert csv.status_code == 200, csv.text
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert "Teapot" in csv.text

    # Her mail: the order's confirmation and the report's notice, through the outbox and SMTP.
    def subjects() -> list[str]:
        out = deploy.compose("exec", "-T", "web", "python3", "-c", MAILBOX, check=False)
        return [m["subject"] for m in json.loads(out.stdout or "[]")]

    wait_until(lambda: len(subjects()) >= 2, timeout=90, what="both of alice's emails")

    check = deploy.compose(
        "exec", "-T", "web", "python3", "manage.py", "check", "--deploy", "--fail-level", "DEBUG",
        check=False,
    )  # fmt: skip
    output = check.stdout + check.stderr
    found = set(re.findall(r"\((security\.\w+)\)", output))
    assert found == deploy_warnings, output
    assert check.returncode == (1 if deploy_warnings else 0), output


def test_production_with_tls_at_nginx(tmp_path):
    tls_dir = tmp_path / "tls"
    run("make", "-s", "tls-dev-cert", f"TLS_DIR={tls_dir}", cwd=ROOT, timeout=60)
    http_port, https_port = PORT + 10, PORT + 11
    env = production(
        f"{PROJECT}-prod-tls",
        http_port,
        COMPOSE_FILE="docker-compose.yml:docker-compose.tls.yml",
        NGINX_TLS_DIR=str(tls_dir),
        NGINX_TLS_PORT=str(https_port),
        PUBLIC_BASE_URL=f"https://localhost:{https_port}",
    )
    deploy = Deploy(
        env_file(tmp_path, env), f"https://localhost:{https_port}", {}, str(tls_dir / "tls.crt")
    )
    with deployed(deploy):
        tour(deploy)
        response = deploy.request("GET", "/api/products")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        plain = requests.get(
            f"http://localhost:{http_port}/api/products", allow_redirects=False, timeout=10
        )
        assert plain.status_code == 308
        assert plain.headers["Location"] == f"https://localhost:{https_port}/api/products"


def test_production_behind_a_tls_terminating_load_balancer(tmp_path):
    port = PORT + 12
    env = production(
        f"{PROJECT}-prod-lb",
        port,
        NGINX_TRUST_FORWARDED_PROTO="true",
        PUBLIC_BASE_URL="https://www.example.com",
    )
    balancer = {"X-Forwarded-Proto": "https"}
    deploy = Deploy(env_file(tmp_path, env), f"http://127.0.0.1:{port}", balancer, True)
    with deployed(deploy):
        tour(deploy)
        response = deploy.request("GET", "/api/products")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        # A request that reached the balancer over plain HTTP is sent to HTTPS, once.
        plain = deploy.request("GET", "/api/products", headers={"X-Forwarded-Proto": "http"})
        assert plain.status_code == 301
        assert plain.headers["Location"] == f"https://127.0.0.1:{port}/api/products"


def test_production_over_plain_http_when_tls_is_declared_off(tmp_path):
    """TLS_ENABLED=false (a private network, no TLS anywhere) reaches Django as well as Nginx:
    no redirect to an HTTPS port nobody serves, and check --deploy names what is given up."""
    port = PORT + 13
    env = production(f"{PROJECT}-prod-plain", port, TLS_ENABLED="false")
    deploy = Deploy(env_file(tmp_path, env), f"http://127.0.0.1:{port}", {}, True)
    with deployed(deploy):
        tour(deploy, deploy_warnings=PLAIN_HTTP_WARNINGS)
        assert "Strict-Transport-Security" not in deploy.request("GET", "/api/products").headers


# HSTS, SSL redirect, session and CSRF cookies not Secure.
PLAIN_HTTP_WARNINGS = frozenset(
    {"security.W004", "security.W008", "security.W012", "security.W016"}
)
