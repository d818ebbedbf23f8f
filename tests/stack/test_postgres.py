"""The primary streams to the replica; the roles hold only the privileges they need; the
server's safety nets end what they should."""

import subprocess
import uuid

import requests

from tests.support import ROOT, wait_until


def test_replica_streams_from_the_primary(stack):
    state = stack.psql("db-primary", "SELECT state FROM pg_stat_replication")
    assert state == "streaming"
    assert stack.psql("db-replica", "SELECT pg_is_in_recovery()") == "t"


def test_the_replica_refuses_writes(stack):
    result = stack.compose(
        "exec",
        "-T",
        "db-replica",
        "psql",
        "-U",
        "postgres",
        "-d",
        "app",
        "-XAtq",
        "-c",
        "CREATE TABLE nope (id int)",
        check=False,
    )
    assert result.returncode != 0
    assert "read-only transaction" in result.stderr


def test_app_role_is_not_privileged_and_replication_role_only_replicates(stack):
    app = stack.psql(
        "db-primary",
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles "
        "WHERE rolname = 'app'",
    )
    assert app == "f|f|f|f"
    replicator = stack.psql(
        "db-primary",
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles "
        "WHERE rolname = 'replicator'",
    )
    assert replicator == "f|f|f|t"
    assert stack.psql("db-primary", "SELECT rolconfig FROM pg_roles WHERE rolname = 'app'") == (
        "{statement_timeout=15s}"
    )


# --- the server's safety nets, each shown ending what it should (postgres/postgresql.conf) ------


def test_a_write_waiting_on_a_locked_row_ends_at_lock_timeout_as_json_and_changes_nothing(stack):
    staff = stack.token("pg-staff", staff=True)
    name = f"lock-{uuid.uuid4().hex[:8]}"
    created = stack.post_json(
        "/api/products", {"name": name, "price": "3.00", "stock": 5}, headers=staff
    )
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]

    def rename() -> requests.Response:
        return requests.patch(
            stack.url(f"/api/products/{product_id}"),
            json={"name": f"{name}-renamed"},
            headers=staff,
            timeout=60,
        )

    # Another session holds the row (an operator's transaction, a long batch) and stays open.
    holder = stack.psql_session()
    assert holder.stdin is not None
    try:
        holder.stdin.write(
            f"BEGIN; SELECT id FROM shop_product WHERE id = {product_id} FOR UPDATE;\n"
        )
        holder.stdin.flush()
        wait_until(
            lambda: (
                stack.psql(
                    "db-primary",
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                    "AND query LIKE '%FOR UPDATE%'",
                )
                == "1"
            ),
            timeout=30,
            what="the row locked by another session",
        )
        response = rename()
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_busy"
        assert response.headers["Retry-After"] == "5"
    finally:
        holder.stdin.write("ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    assert (
        stack.psql("db-primary", f"SELECT name FROM shop_product WHERE id = {product_id}") == name
    )
    # Once the lock is gone, the same request succeeds.
    retried = rename()
    assert retried.status_code == 200, retried.text


def test_a_session_left_idle_in_a_transaction_is_ended_by_the_server(stack):
    # Nothing in a request can idle that long (the worker's timeout ends the request first):
    # this net catches a shell, a script or a task that opened a transaction and stalled, and
    # frees the locks it held. Production's 60 s (.env.example, compose's default); the suite's
    # stack sets a shorter one (tests/stack/conftest.py), the same mechanism sooner.
    env_example = (ROOT / ".env.example").read_text()
    assert "\nPOSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT=60s\n" in env_example
    compose_file = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT:-60s}" in compose_file
    configured = stack.env()["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"]
    for service in ("db-primary", "db-replica"):
        assert stack.psql(service, "SHOW idle_in_transaction_session_timeout") == configured
    name = f"idle-{uuid.uuid4().hex[:8]}"
    session = subprocess.Popen(
        ["docker", "compose", "exec", "-T", "db-primary",
         "psql", "-U", "postgres", "-d", "app", "-XAtq", "-v", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=ROOT, env=stack.env(), text=True,
    )  # fmt: skip
    assert session.stdin is not None
    try:
        session.stdin.write(f"SET application_name = '{name}';\nBEGIN;\nSELECT 1;\n")
        session.stdin.flush()
        state = (
            "SELECT coalesce(max(state), 'gone') FROM pg_stat_activity "
            f"WHERE application_name = '{name}'"
        )
        wait_until(
            lambda: stack.psql("db-primary", state) == "idle in transaction",
            timeout=30,
            what="the session idle in its transaction",
        )
        # Polled, not slept: the server ends it once the timeout has passed.
        wait_until(
            lambda: stack.psql("db-primary", state) == "gone",
            timeout=90,
            what="the idle session ended by the server",
        )
        _, stderr = session.communicate("SELECT 2;\n", timeout=30)
    finally:
        session.kill()
    assert session.returncode != 0
    assert "idle-in-transaction timeout" in stderr, stderr
