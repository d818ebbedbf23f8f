"""The crowd of database clients that scenario 6 of `make bench` and
tests/stack/test_pgbouncer.py both send at PgBouncer: one program, run inside the web container
(the backend network) with the app's own credentials.

`python3 -c SCRIPT <clients> <queries each> <pgbouncer|direct> <query sleep s> <connect timeout s>`
opens every client connection at once (asyncio psycopg), each running its queries (`SELECT 1`,
or `SELECT pg_sleep(s)` so that clients hold their server connection a while), while a monitor
connection straight to the primary samples what Postgres itself sees (pg_stat_activity) every
20 ms. Its last stdout line is JSON: queries, seconds, queries/s, the error count with up to five
kinds, and peak_server_connections. Standard library plus psycopg (both in the web image).
"""

SCRIPT = r"""
import asyncio, json, os, sys, time
import psycopg
N, QUERIES, TARGET = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
SLEEP = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
CONNECT_TIMEOUT = int(sys.argv[5]) if len(sys.argv) > 5 else 15
QUERY = f"SELECT pg_sleep({SLEEP})" if SLEEP else "SELECT 1"
HOST, PORT = {"pgbouncer": ("pgbouncer", 6432), "direct": ("db-primary", 5432)}[TARGET]
# 0: no client-side limit (libpq waits as long as the server lets it).
kw = dict(user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"], dbname="app",
          autocommit=True, connect_timeout=CONNECT_TIMEOUT)
peak = 0
done = asyncio.Event()
async def client(stats):
    try:
        conn = await psycopg.AsyncConnection.connect(host=HOST, port=PORT, **kw)
        async with conn:
            for _ in range(QUERIES):
                await conn.execute(QUERY)
                stats["queries"] += 1
    except Exception as exc:
        message = (str(exc).splitlines() or [""])[0]
        # "connection failed: connection to server at ... failed: FATAL: ...": keep the reason.
        message = message[message.find("FATAL:"):] if "FATAL:" in message else message
        key = f"{type(exc).__name__}: {message[:80]}"
        stats["errors"][key] = stats["errors"].get(key, 0) + 1
async def monitor():
    # Opened before the crowd: what Postgres itself sees, bypassing PgBouncer.
    global peak
    conn = await psycopg.AsyncConnection.connect(host="db-primary", port=5432, **kw)
    async with conn:
        while not done.is_set():
            row = await (await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND usename = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (kw["user"],))).fetchone()
            peak = max(peak, row[0])
            await asyncio.sleep(0.02)
async def main():
    stats = {"queries": 0, "errors": {}}
    watcher = asyncio.create_task(monitor())
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client(stats) for _ in range(N))), 180)
    elapsed = time.monotonic() - started
    done.set()
    await watcher
    print(json.dumps({"target": TARGET, "clients": N, "queries_per_client": QUERIES,
                      "query": QUERY, "queries": stats["queries"], "seconds": round(elapsed, 2),
                      "qps": round(stats["queries"] / elapsed, 1),
                      "error_count": sum(stats["errors"].values()),
                      "errors": dict(sorted(stats["errors"].items())[:5]),
                      "peak_server_connections": peak}))
asyncio.run(main())
"""


def args(
    *, clients: int, queries: int, target: str, sleep_s: float = 0.0, connect_timeout_s: int = 15
) -> list[str]:
    """`python3 -c SCRIPT` and its arguments, for `docker compose exec -T web ...`.

    connect_timeout_s: the bench's 15 s is five times the app's DB_CONNECT_TIMEOUT, so a slow
    handshake in the connection storm is told apart from a refusal; 0 waits as long as the
    server lets it (the stack test: no timing assertions on a shared machine).
    """
    return [
        "python3", "-c", SCRIPT,
        str(clients), str(queries), target, str(sleep_s), str(connect_timeout_s),
    ]  # fmt: skip
