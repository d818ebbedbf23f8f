"""Scenario 6 of `make bench` and tests/stack/test_pgbouncer.py, inside web: a crowd of database
clients at PgBouncer or straight at the primary (bench/pgbouncer_clients.py says the
arguments). Its last stdout line is JSON."""

import asyncio
import json
import os
import sys
import time
from typing import Any

import psycopg

N, QUERIES, TARGET = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
SLEEP = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
CONNECT_TIMEOUT = int(sys.argv[5]) if len(sys.argv) > 5 else 15
QUERY = f"SELECT pg_sleep({SLEEP})" if SLEEP else "SELECT 1"
HOST, PORT = {"pgbouncer": ("pgbouncer", 6432), "direct": ("db-primary", 5432)}[TARGET]
# 0: no client-side limit (libpq waits as long as the server lets it).
kw: dict[str, Any] = {
    "user": os.environ["DB_USER"],
    "password": os.environ["DB_PASSWORD"],
    "dbname": "app",
    "autocommit": True,
    "connect_timeout": CONNECT_TIMEOUT,
}
peak = 0
done = asyncio.Event()


async def client(stats: dict[str, Any]) -> None:
    try:
        conn = await psycopg.AsyncConnection.connect(host=HOST, port=PORT, **kw)
        async with conn:
            for _ in range(QUERIES):
                await conn.execute(QUERY)
                stats["queries"] += 1
    except Exception as exc:
        message = (str(exc).splitlines() or [""])[0]
        # "connection failed: connection to server at ... failed: FATAL: ...": keep the reason.
        message = message[message.find("FATAL:") :] if "FATAL:" in message else message
        key = f"{type(exc).__name__}: {message[:80]}"
        stats["errors"][key] = stats["errors"].get(key, 0) + 1


async def monitor() -> None:
    # Opened before the crowd: what Postgres itself sees, bypassing PgBouncer.
    global peak
    conn = await psycopg.AsyncConnection.connect(host="db-primary", port=5432, **kw)
    async with conn:
        while not done.is_set():
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND usename = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (kw["user"],),
            )
            row = await cursor.fetchone()
            peak = max(peak, row[0] if row else 0)
            await asyncio.sleep(0.02)


async def main() -> None:
    stats: dict[str, Any] = {"queries": 0, "errors": {}}
    watcher = asyncio.create_task(monitor())
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client(stats) for _ in range(N))), 180)
    elapsed = time.monotonic() - started
    done.set()
    await watcher
    result = {
        "target": TARGET,
        "clients": N,
        "queries_per_client": QUERIES,
        "query": QUERY,
        "queries": stats["queries"],
        "seconds": round(elapsed, 2),
        "qps": round(stats["queries"] / elapsed, 1),
        "error_count": sum(stats["errors"].values()),
        "errors": dict(sorted(stats["errors"].items())[:5]),
        "peak_server_connections": peak,
    }
    print(json.dumps(result))


asyncio.run(main())
