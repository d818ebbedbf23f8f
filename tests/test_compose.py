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


def _config(*files: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "DOCKER_HOST"}}
    args = [a for f in files for a in ("-f", f)]
    result = subprocess.run(
        ["docker", "compose", *args, "config", "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout)["services"]


DJANGO = ("web", "migrate", "worker", "worker-reports", "worker-email", "beat")


def test_development_mode_is_only_in_its_own_file():
    """docker-compose.dev.yml (`make dev`) adds the bind mount, DEBUG and loopback ports; with
    docker-compose.yml alone (production), none of it, though the file sits beside it."""
    prod = _config()
    published = {name: s["ports"] for name, s in prod.items() if s.get("ports")}
    assert list(published) == ["nginx"]
    for name in DJANGO:
        service = prod[name]
        assert service["environment"]["DJANGO_DEBUG"] == "false", name
        assert service["image"].startswith("djstack/web:"), name
        assert "user" not in service, name
        assert not [v for v in service.get("volumes", []) if v["type"] == "bind"], name
    assert prod["web"]["build"]["target"] == "runtime"

    dev = _config("docker-compose.yml", "docker-compose.dev.yml")
    ports = {name: s["ports"] for name, s in dev.items() if s.get("ports")}
    assert sorted(ports) == ["db-primary", "mailcatcher", "nginx", "redis", "web"]
    assert {p["host_ip"] for service in ports.values() for p in service} == {"127.0.0.1"}
    for name in DJANGO:
        service = dev[name]
        assert service["environment"]["DJANGO_DEBUG"] == "true", name
        assert service["image"].startswith("djstack/web-dev:"), name
        assert service["user"] == "1000:1000", name
        (mount,) = [v for v in service["volumes"] if v["target"] == "/app"]
        assert (mount["type"], mount["source"]) == ("bind", str(ROOT / "app")), name
    assert dev["web"]["build"]["target"] == "dev"
