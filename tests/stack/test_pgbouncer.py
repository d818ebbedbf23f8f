"""PgBouncer in transaction mode: prepared statements survive pooling, and hundreds of clients
share a few server connections. The client programs run inside the web container (the
backend network), with the app's own credentials."""

import json

from tests.support import wait_until

PREPARED = """
import json, os, psycopg
kw = dict(host="pgbouncer", port=6432, dbname="app", user=os.environ["DB_USER"],
          password=os.environ["DB_PASSWORD"], autocommit=True)
# prepare_threshold=0: psycopg prepares every statement (protocol-level Parse/Bind).
conns = [psycopg.connect(prepare_threshold=0, **kw) for _ in range(4)]
rows = 0
for i in range(200):
    conn = conns[i % 4]  # each statement is its own transaction: any server connection may run it
    rows += conn.execute("SELECT count(*) FROM shop_product WHERE id > %s", (i,)).fetchone()[0] >= 0
admin = psycopg.connect(**{**kw, "dbname": "pgbouncer"})
cur = admin.cursor()
cur.execute("SHOW STATS")
names = [d.name for d in cur.description]
stats = {r[names.index("database")]: dict(zip(names, r)) for r in cur.fetchall()}
print(json.dumps({"ok": rows, "client_parse": stats["app"]["total_client_parse_count"],
                  "server_parse": stats["app"]["total_server_parse_count"],
                  "binds": stats["app"]["total_bind_count"]}, default=str))
"""

CROWD = """
import asyncio, json, os, psycopg
N = 500
kw = dict(user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"], dbname="app")
peak = 0
done = asyncio.Event()

async def client(errors):
    try:
        conn = await psycopg.AsyncConnection.connect(
            host="pgbouncer", port=6432, autocommit=True, **kw)
        async with conn:
            for _ in range(3):
                await conn.execute("SELECT pg_sleep(0.05)")
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")

async def monitor():
    global peak
    # Directly on the primary, bypassing PgBouncer: what Postgres itself sees.
    conn = await psycopg.AsyncConnection.connect(
        host="db-primary", port=5432, autocommit=True, **kw)
    async with conn:
        while not done.is_set():
            row = await (await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND usename = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (kw["user"],))).fetchone()
            peak = max(peak, row[0])
            await asyncio.sleep(0.02)

async def main():
    errors = []
    watcher = asyncio.create_task(monitor())
    await asyncio.gather(*(client(errors) for _ in range(N)))
    done.set()
    await watcher
    print(json.dumps(
        {"clients": N, "errors": errors[:5], "error_count": len(errors), "peak": peak}))

asyncio.run(main())
"""


def run_in_web(stack, script):
    out = stack.compose("exec", "-T", "web", "python3", "-c", script, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_prepared_statements_survive_transaction_pooling(stack):
    result = run_in_web(stack, PREPARED)
    assert (
        result["ok"] == 200
    )  # every execution answered; none hit "prepared statement ... does not exist"
    # PgBouncer saw the clients' Parse messages and prepared on its servers as needed.
    assert int(result["client_parse"]) >= 4
    assert int(result["server_parse"]) >= 1
    assert int(result["binds"]) >= 200


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
    result = run_in_web(stack, CROWD)
    assert result["error_count"] == 0, result["errors"]
    # Postgres never sees more than the pool (plus the reserve PgBouncer opens for clients
    # that waited past reserve_pool_timeout), however many clients connect.
    assert 1 <= result["peak"] <= pool + reserve
    wait_until(lambda: stack.get("/readyz").status_code == 200, timeout=30, what="readiness")
