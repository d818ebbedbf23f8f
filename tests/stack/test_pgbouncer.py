"""PgBouncer in transaction mode: prepared statements survive pooling, and hundreds of clients
share a few server connections; a Postgres server back at another address is reached without
restarting PgBouncer. The client programs run inside the web container (the backend network),
with the app's own credentials; PgBouncer's statistics are read as its stats user (the app's
role may not: stats_users)."""

import json
import subprocess
import threading
import time

import pytest
import requests

from bench import pgbouncer_clients  # demo-shop
from tests.support import ROOT, docker, wait_until

PREPARED = """
import json, os, sys, psycopg
kw = dict(host="pgbouncer", port=6432, dbname="app", user=os.environ["DB_USER"],
          password=os.environ["DB_PASSWORD"], autocommit=True)
# prepare_threshold=0: psycopg prepares every statement (protocol-level Parse/Bind).
conns = [psycopg.connect(prepare_threshold=0, **kw) for _ in range(4)]
rows = 0
for i in range(200):
    conn = conns[i % 4]  # each statement is its own transaction: any server connection may run it
    rows += conn.execute("SELECT count(*) FROM shop_product WHERE id > %s", (i,)).fetchone()[0] >= 0
admin = psycopg.connect(**{**kw, "dbname": "pgbouncer", "user": sys.argv[1],
                           "password": sys.argv[2]})
cur = admin.cursor()
cur.execute("SHOW STATS")
names = [d.name for d in cur.description]
stats = {r[names.index("database")]: dict(zip(names, r)) for r in cur.fetchall()}
print(json.dumps({"ok": rows, "client_parse": stats["app"]["total_client_parse_count"],
                  "server_parse": stats["app"]["total_server_parse_count"],
                  "binds": stats["app"]["total_bind_count"]}, default=str))
"""


def run_in_web(stack, script, *args):
    out = stack.compose("exec", "-T", "web", "python3", "-c", script, *args, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def stats_login(stack) -> list[str]:
    """PgBouncer's stats user and password, from its own container's env."""
    script = 'printf "%s\\n%s" "$PGBOUNCER_STATS_USER" "$PGBOUNCER_STATS_PASSWORD"'
    return stack.compose("exec", "-T", "pgbouncer", "sh", "-c", script).stdout.splitlines()


def test_prepared_statements_survive_transaction_pooling(stack):
    result = run_in_web(stack, PREPARED, *stats_login(stack))
    assert (
        result["ok"] == 200
    )  # every execution answered; none hit "prepared statement ... does not exist"
    # PgBouncer saw the clients' Parse messages and prepared on its servers as needed.
    assert int(result["client_parse"]) >= 4
    assert int(result["server_parse"]) >= 1
    assert int(result["binds"]) >= 200


# demo-shop: begin (the 500 clients are the bench's program, which goes with the demo)
def pool_limits(stack):
    env = stack.compose("exec", "-T", "pgbouncer", "cat", "/tmp/pgbouncer/pgbouncer.ini").stdout
    settings = dict(
        line.split(" = ", 1)
        for line in env.splitlines()
        if " = " in line and not line.startswith(";")
    )
    return int(settings["default_pool_size"]), int(settings["reserve_pool_size"])


def test_500_clients_share_the_pool_and_none_is_refused(stack):
    pool, reserve = pool_limits(stack)
    # 500 clients at once, each holding a server connection for three 50 ms queries: the same
    # program as make bench's 1,000-client scenario (bench/pgbouncer_clients.py).
    # No client-side connect timeout: a refusal is an error, a slow shared machine is not.
    command = pgbouncer_clients.args(
        clients=500, queries=3, target="pgbouncer", sleep_s=0.05, connect_timeout_s=0
    )
    out = stack.compose("exec", "-T", "web", *command, timeout=300).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["error_count"] == 0, result["errors"]
    assert result["queries"] == 500 * 3
    # Postgres never sees more than the pool (plus the reserve PgBouncer opens for clients
    # that waited past reserve_pool_timeout), however many clients connect.
    assert 1 <= result["peak_server_connections"] <= pool + reserve
    wait_until(lambda: stack.readyz().status_code == 200, timeout=30, what="readiness")


# demo-shop: end


# --- A server recreated at another address ------------------------------------------------

# Through PgBouncer, from its own container: the address of the server that answered.
SERVER_ADDRESS = (
    'PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=15 psql -h 127.0.0.1 -p 6432 -U "$DB_USER" '
    '-d "$1" -XAtc "SELECT inet_server_addr()"'
)


def server_address(stack, database: str) -> str | None:
    result = stack.compose(
        "exec", "-T", "pgbouncer", "sh", "-c", SERVER_ADDRESS, "_", database, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def container_address(container: str) -> str:
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return docker("inspect", "--format", template, container).stdout.strip()


@pytest.mark.parametrize(
    ("service", "database"), [("db-replica", "app_replica"), ("db-primary", "app")]
)
def test_a_server_back_at_another_address_is_reached_without_restarting_pgbouncer(
    stack, service, database
):
    """The server stops, another container takes its address, and it starts again at a new one
    (as a recreated pod does): PgBouncer follows without a restart (pgbouncer/watch-hosts.sh)."""
    (server,) = stack.compose("ps", "-q", service).stdout.split()
    (pgbouncer,) = stack.compose("ps", "-q", "pgbouncer").stdout.split()
    started = docker("inspect", "--format", "{{.State.StartedAt}}", pgbouncer).stdout
    old = container_address(server)
    assert server_address(stack, database) == old
    squatter = f"{stack.project}-address-squatter"
    stack.compose("stop", service)
    try:
        # Takes the freed address: the server gets another one when it starts.
        image = docker("inspect", "--format", "{{.Config.Image}}", pgbouncer).stdout.strip()
        network = f"{stack.project}_backend"
        docker("run", "--detach", "--rm", "--name", squatter, "--network", network,
               "--entrypoint", "sleep", image, "300")  # fmt: skip
        stack.compose("start", service)
        new = container_address(server)
        assert new != old, "the server came back at its old address: nothing to prove"
        wait_until(
            lambda: server_address(stack, database) == new,
            timeout=60,
            what=f"PgBouncer's {database} answered from {service}'s new address {new}",
        )
    finally:
        docker("rm", "--force", squatter, check=False)
        stack.compose("start", service)
    # Every client after the outage is served, by the same PgBouncer process.
    assert [server_address(stack, database) for _ in range(5)] == [new] * 5
    assert docker("inspect", "--format", "{{.State.StartedAt}}", pgbouncer).stdout == started
    logs = stack.compose("logs", "--no-color", "--no-log-prefix", "pgbouncer").stdout
    assert f"pgbouncer: {service} is at {new} (was {old})" in logs
    stack.wait_ready()
    # The stack as the next module expects it: the replica streaming again (after the primary
    # moved, its WAL receiver reconnects only at its next retry).
    wait_until(
        lambda: stack.psql("db-primary", "SELECT state FROM pg_stat_replication") == "streaming",
        timeout=60,
        what="the replica streaming from the primary again",
    )


# --- The health checks' own pool ------------------------------------------------------------

# Clients of the app's pool that each wait on one advisory lock inside a transaction, as
# requests wait on a hot row: each holds a server connection until the lock is released.
HOLD_THE_POOL = """
import json, os, sys, threading, psycopg
kw = dict(host="pgbouncer", port=6432, dbname=os.environ["DB_NAME"], user=os.environ["DB_USER"],
          password=os.environ["DB_PASSWORD"])
results = []
def wait_on_the_lock():
    try:
        with psycopg.connect(**kw) as conn, conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '60s'")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (int(sys.argv[2]),))
        results.append("ok")
    except Exception as exc:
        results.append(f"{type(exc).__name__}: {exc}"[:200])
threads = [threading.Thread(target=wait_on_the_lock) for _ in range(int(sys.argv[1]))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(results))
"""
LOCK_KEY = 4242


def lock_waiters(stack) -> int:
    return int(
        stack.psql(
            "db-primary",
            f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {LOCK_KEY} "
            "AND NOT granted",
        )
    )


def test_requests_holding_the_whole_pool_neither_make_the_primary_look_down_nor_fail_a_write(
    stack,
):
    """Every server connection of the app's pool (and its reserve) waits on a lock for longer
    than the primary may go unchecked (PRIMARY_STALL_SECONDS): the checks, in a pool of their
    own (DB_CHECK_SUFFIX), still reach it, so web's gauge says the primary is reachable and a
    write queued behind the pool is served once the lock goes, not refused as "primary stopped
    answering"."""
    from core.db import PRIMARY_STALL_SECONDS

    me = stack.token("pool-held")
    stack.token("pool-held")  # a second token, revoked while the pool is held
    tokens = stack.get("/api/auth/tokens", headers=me).json()
    (spare,) = [token["id"] for token in tokens if not token["current"]][:1]
    pool = int(stack.env().get("PGBOUNCER_POOL_SIZE") or 20)
    clients = pool + 5 + 15  # the pool, its reserve, and a queue behind them
    holder = stack.psql_session()
    assert holder.stdin is not None
    waiters: subprocess.Popen[str] | None = None
    revoked: list[requests.Response] = []
    try:
        holder.stdin.write(f"SELECT pg_advisory_lock({LOCK_KEY});\n")
        holder.stdin.flush()
        wait_until(
            lambda: stack.psql(
                "db-primary",
                f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {LOCK_KEY}"
                " AND granted",
            ) == "1",
            timeout=30,
            what="the lock taken",
        )  # fmt: skip
        waiters = subprocess.Popen(
            ["docker", "compose", "exec", "-T", "web",
             "python3", "-c", HOLD_THE_POOL, str(clients), str(LOCK_KEY)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=stack.env(), text=True,
        )  # fmt: skip
        wait_until(lambda: lock_waiters(stack) >= pool, timeout=30, what="the pool held")
        time.sleep(PRIMARY_STALL_SECONDS + 1.5)
        assert stack.metric("django_db_primary_reachable", alias="default") == 1
        revoke = threading.Thread(
            target=lambda: revoked.append(
                requests.delete(stack.url(f"/api/auth/tokens/{spare}"), headers=me, timeout=60)
            )
        )
        revoke.start()
        time.sleep(0.5)
    finally:
        holder.stdin.write(f"SELECT pg_advisory_unlock({LOCK_KEY});\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    revoke.join(timeout=60)
    out, err = waiters.communicate(timeout=60)
    results = json.loads(out.strip().splitlines()[-1])
    # Each waiter held its server connection (or queued for one) until the lock went.
    assert results == ["ok"] * clients, err
    (answer,) = revoked
    assert answer.status_code == 204, answer.text
    assert spare not in [token["id"] for token in stack.get("/api/auth/tokens", headers=me).json()]


def test_the_healthcheck_passes_and_leaves_no_warning_in_pgbouncers_log(stack):
    """The image's HEALTHCHECK, run as Docker runs it every 5 s: asking for the admin console as
    the app's role, it was refused each time, a WARNING `pooler error: not allowed`."""
    container = stack.compose("ps", "-q", "pgbouncer").stdout.strip()
    probe = json.loads(
        docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", container).stdout
    )
    assert probe[0] == "CMD"
    since = docker("exec", container, "date", "-u", "+%Y-%m-%dT%H:%M:%S.%NZ").stdout.strip()
    for _ in range(3):
        assert docker("exec", container, *probe[1:], check=False).returncode == 0
    time.sleep(6)  # Docker's own run of it too
    out = docker("logs", "--since", since, container)
    logged = out.stdout + out.stderr
    assert "WARNING" not in logged, logged
