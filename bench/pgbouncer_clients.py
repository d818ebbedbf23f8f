"""The crowd of database clients that scenario 6 of `make bench` and
tests/stack/test_pgbouncer.py both send at PgBouncer: one program, run inside the web container
(the backend network) with the app's own credentials.

`python3 -c SCRIPT <clients> <queries each> <pgbouncer|direct> <query sleep s> <connect timeout s>`
opens every client connection at once (asyncio psycopg), each running its queries (`SELECT 1`,
or `SELECT pg_sleep(s)` so that clients hold their server connection a while), while a monitor
connection straight to the primary samples what Postgres itself sees (pg_stat_activity) every
20 ms. Its last stdout line is JSON: queries, seconds, queries/s, the error count with up to five
kinds, and peak_server_connections. Standard library plus psycopg (both in the web image);
the program is bench/incontainer/pgbouncer_crowd.py.
"""

from bench import incontainer

SCRIPT = incontainer.script("pgbouncer_crowd")


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
