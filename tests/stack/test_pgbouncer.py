"""PgBouncer in transaction mode: prepared statements survive pooling, and hundreds of clients
share a few server connections. The client programs run inside the web container (the
backend network), with the app's own credentials; PgBouncer's statistics are read as its stats
user (the app's role may not: stats_users)."""

import json

from bench import pgbouncer_clients  # demo-shop
from tests.support import wait_until  # demo-shop

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
