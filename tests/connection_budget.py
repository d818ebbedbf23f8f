"""The server connections a Postgres may be asked for, from the rendered configs: every
PgBouncer pod's pool and reserve, plus what logs in directly (the exporters' role, up to its
connection limit), against the connections Postgres admits to roles that are not superusers."""

import re
from dataclasses import dataclass

from tests.support import ROOT


def config_value(path: str, name: str, separator: str = "=") -> int:
    text = (ROOT / path).read_text()
    match = re.search(rf"^{name}\s*{separator}\s*(\d+)", text, re.MULTILINE)
    assert match, f"{name} not set in {path}"
    return int(match.group(1))


@dataclass(frozen=True)
class Budget:
    pgbouncer_pods: int  # the most that run at once (a rollout's surge included)
    pool_size: int  # PGBOUNCER_POOL_SIZE as the rendered config sets it
    exporters: bool  # Postgres exporters run: their role's connections bypass PgBouncer

    # PgBouncer keeps one pool per (database, user) and each logical database names one server;
    # only the app's role reaches a server through it (the admin console opens none).
    POOLS_PER_SERVER = 1

    @property
    def reserve(self) -> int:
        return config_value("pgbouncer/pgbouncer.ini.template", "reserve_pool_size")

    @staticmethod
    def checks() -> int:
        """The health checks' pool on each server (DB_CHECK_SUFFIX): its size and reserve."""
        text = (ROOT / "pgbouncer/entrypoint.sh").read_text()
        match = re.search(r"pool_size=(\d+) reserve_pool_size=(\d+)", text)
        assert match, "the check databases' pool not found in pgbouncer/entrypoint.sh"
        return int(match.group(1)) + int(match.group(2))

    @property
    def direct(self) -> int:
        """The exporters' role's CONNECTION LIMIT: all they may hold on one server."""
        if not self.exporters:
            return 0
        return config_value("postgres/entrypoint.sh", "  CONNECTION LIMIT", separator="")

    @property
    def demand(self) -> int:
        per_pod = (self.pool_size + self.reserve) * self.POOLS_PER_SERVER + self.checks()
        return self.pgbouncer_pods * per_pod + self.direct

    @staticmethod
    def supply() -> int:
        conf = "postgres/postgresql.conf"
        return config_value(conf, "max_connections") - config_value(
            conf, "superuser_reserved_connections"
        )

    def check(self, where: str) -> None:
        assert self.demand <= self.supply(), (
            f"{where}: {self.pgbouncer_pods} PgBouncer pod(s) x ({self.pool_size} + "
            f"{self.reserve} reserve + {self.checks()} for the checks) + {self.direct} for the "
            f"exporters = {self.demand} server "
            f"connections, but Postgres admits {self.supply()} (max_connections - superuser slots)"
        )
