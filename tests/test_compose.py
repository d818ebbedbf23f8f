"""The compose file as rendered, every profile included: properties every service must have."""

import json
import os
import subprocess

from tests.connection_budget import Budget
from tests.support import ROOT


def rendered() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOG_MAX_")}
    result = subprocess.run(
        ["docker", "compose", "--profile", "*", "config", "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_every_service_logs_to_a_size_capped_rotating_file():
    services = rendered()["services"]
    assert len(services) > 20  # the monitoring and test profiles are in
    for name, service in services.items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert logging["options"] == {"max-size": "10m", "max-file": "3"}, name


def test_pgbouncer_pools_and_the_exporters_fit_in_postgres_max_connections():
    services = rendered()["services"]
    pgbouncer = services["pgbouncer"]
    exporters = [
        name for name, service in services.items()
        if "postgres-exporter" in (service.get("command") or [])
    ]  # fmt: skip
    assert exporters, "the monitoring profile is in the rendering"
    budget = Budget(
        pgbouncer_pods=int(pgbouncer.get("deploy", {}).get("replicas") or 1),
        pool_size=int(pgbouncer["environment"]["PGBOUNCER_POOL_SIZE"]),
        exporters=bool(exporters),
    )
    budget.check("compose")
