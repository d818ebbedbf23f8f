"""Containers and services locked down: read-only, no capabilities, separate networks,
authenticated Redis, least-privilege database roles; security headers on every response."""

import json

import pytest

from tests.stack.test_nginx import static_path
from tests.support import container_health, docker


def running_containers(stack) -> dict[str, dict]:
    ids = stack.compose("ps", "--quiet").stdout.split()
    inspected = json.loads(docker("inspect", *ids).stdout)
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def test_every_container_is_read_only_unprivileged_and_non_root(stack):
    containers = running_containers(stack)
    assert {"nginx", "web", "worker", "beat", "pgbouncer", "db-primary", "redis"} <= set(containers)
    for service, container in containers.items():
        host = container["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert not host.get("CapAdd"), service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["Privileged"] is False, service
        assert "/tmp" in host["Tmpfs"], service
        # Docker rotates the log: a looping service cannot fill the disk.
        assert host["LogConfig"] == {
            "Type": "json-file",
            "Config": {"max-file": "3", "max-size": "10m"},
        }, service
        user = container["Config"]["User"]
        assert user, service
        assert not user.startswith(("0", "root")), service


def test_the_root_filesystem_really_refuses_writes(stack):
    for service in ("web", "nginx", "db-primary", "redis", "pgbouncer"):
        result = stack.compose(
            "exec", "-T", service, "sh", "-c", "touch /probe 2>&1 || true; touch /tmp/ok && echo w"
        )
        assert "Read-only file system" in result.stdout, service
        assert result.stdout.strip().endswith("w"), service


def connect_from(stack, service: str, host: str, port: int) -> str:
    """'ok', or why a TCP connection from inside `service` failed."""
    script = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('{host}', {port}), timeout=3).close(); print('ok')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    return stack.compose("exec", "-T", service, "python3", "-c", script).stdout.strip()


def nginx_reaches(stack, host: str, port: int) -> str:
    # The Nginx image has no Python: bash's /dev/tcp, after a name lookup.
    script = (
        f"getent hosts {host} >/dev/null || {{ echo unresolved; exit 0; }}; "
        f"timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null && echo ok || echo refused"
    )
    return stack.compose("exec", "-T", "nginx", "bash", "-c", script).stdout.strip()


@pytest.mark.parametrize(
    ("host", "port"),
    [("db-primary", 5432), ("db-replica", 5432), ("redis", 6379), ("pgbouncer", 6432)],
)
def test_nginx_cannot_reach_the_data_services_but_web_can(stack, host, port):
    assert nginx_reaches(stack, host, port) == "unresolved"
    assert connect_from(stack, "web", host, port) == "ok"
    assert nginx_reaches(stack, "web", 8000) == "ok"


def test_redis_refuses_commands_without_the_password(stack):
    script = (
        "import socket\n"
        "s = socket.create_connection(('redis', 6379), timeout=3)\n"
        "s.sendall(b'PING\\r\\n'); print(s.recv(200).decode().strip())\n"
        "s.sendall(b'CONFIG GET requirepass\\r\\n'); print(s.recv(200).decode().strip())\n"
    )
    lines = stack.compose("exec", "-T", "web", "python3", "-c", script).stdout.splitlines()
    assert lines[0].startswith("-NOAUTH")
    assert lines[1].startswith("-NOAUTH")


def psql_as(stack, user_var: str, password_var: str, database: str, sql: str):
    """psql over TCP inside db-primary, as the role and password from the container's env."""
    script = (
        f'PGPASSWORD="${password_var}" psql -h 127.0.0.1 -U "${user_var}" -d {database} '
        f'-XAtq -v ON_ERROR_STOP=1 -c "{sql}"'
    )
    return stack.compose("exec", "-T", "db-primary", "sh", "-c", script, check=False)


def test_the_app_role_cannot_create_roles_or_open_other_databases(stack):
    assert psql_as(stack, "DB_USER", "DB_PASSWORD", "app", "SELECT 1").stdout.strip() == "1"
    created = psql_as(stack, "DB_USER", "DB_PASSWORD", "app", "CREATE ROLE intruder")
    assert created.returncode != 0
    assert "permission denied to create role" in created.stderr
    created_db = psql_as(stack, "DB_USER", "DB_PASSWORD", "app", "CREATE DATABASE intruder")
    assert "permission denied to create database" in created_db.stderr
    for other in ("postgres", "template1"):
        opened = psql_as(stack, "DB_USER", "DB_PASSWORD", other, "SELECT 1")
        assert opened.returncode != 0
        assert f'permission denied for database "{other}"' in opened.stderr


def test_the_replication_role_cannot_log_in_to_a_database(stack):
    refused = psql_as(stack, "REPLICATION_USER", "REPLICATION_PASSWORD", "app", "SELECT 1")
    assert refused.returncode != 0
    assert "pg_hba.conf rejects connection" in refused.stderr
    # It still streams: the replica is attached with it.
    assert stack.psql("db-primary", "SELECT usename FROM pg_stat_replication") == "replicator"


CSP_STRICT = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
EDGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def header_values(response, name: str) -> list[str]:
    return response.raw.headers.getlist(name)


@pytest.mark.parametrize(
    "path", ["/api/products", "/healthz", "/media/x", "/definitely/not/here", "STATIC"]
)
def test_security_headers_once_on_every_response(stack, path):
    response = stack.get(static_path() if path == "STATIC" else path)
    for name, value in EDGE_HEADERS.items():
        assert header_values(response, name) == [value], (path, name)
    assert header_values(response, "Content-Security-Policy") == [CSP_STRICT], path
    # Plain HTTP: no HSTS (docker-compose.tls.yml turns it on; test_tls).
    assert "Strict-Transport-Security" not in response.headers
    if path == "/api/products":
        assert response.headers["X-Frame-Options"] == "DENY"  # Django's, passed through


def test_the_admin_and_api_docs_get_a_policy_that_lets_their_pages_work(stack):
    for path in ("/admin/login/", "/api/docs"):
        response = stack.get(path)
        assert response.status_code == 200
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src" not in csp  # scripts: this origin's files only, never inline
        assert response.headers["X-Frame-Options"] == "DENY"


def test_a_client_cannot_claim_https_over_plain_http(stack):
    """NGINX_TRUST_FORWARDED_PROTO is false in compose: Nginx overwrites the header."""
    response = stack.get("/media/x", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


def test_health_checks_leave_no_fatal_line_in_the_postgres_logs(stack):
    """Docker checks each Postgres server every 5 s: a check that Postgres logs as FATAL would
    bury the real ones. Both servers have been checked many times by now, and are healthy."""
    for service in ("db-primary", "db-replica"):
        container = stack.compose("ps", "-q", service).stdout.strip()
        assert container_health(container) == "healthy", service
        logs = stack.compose("logs", "--no-color", service).stdout
        assert 'rejects connection for host "127.0.0.1", user "postgres"' not in logs, service
        assert 'FATAL:  role "healthcheck"' not in logs, service
