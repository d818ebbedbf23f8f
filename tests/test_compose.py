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


DJANGO = (
    "web",
    "migrate",
    "worker",
    "worker-reports",  # demo-shop
    "worker-email",
    "beat",
)


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
        # Every process restarts on a code change, each with the command it runs in production
        # (tests/dev runs one worker's restart for real).
        if name not in ("web", "migrate"):
            command = dev[name]["command"]
            assert command[:3] == ["watchfiles", "--target-type", "command"], name
            assert command[3].split()[0] == "/opt/celery/entrypoint.sh", name
            assert command[-1] == "/app", name
    assert dev["web"]["build"]["target"] == "dev"


def foreign_bases(dockerfile: str) -> list[str]:
    """The FROM lines that start from neither the base image nor an earlier stage of the same
    file: images another build must have made first (COPY --from counts too). `scratch`, the
    empty image, is no image at all: Docker never looks it up."""
    stages: set[str] = set()
    found = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            base = next(w for w in words[1:] if not w.startswith("--"))
            if base not in {"${BASE_IMAGE}", "scratch"} and base not in stages:
                found.append(line)
            if len(words) >= 4 and words[-2].upper() == "AS":
                stages.add(words[-1])
        elif words[:1] == ["COPY"]:
            source = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if source is not None and source not in stages:
                found.append(line)
    return found


def test_no_build_depends_on_another_build_having_run_first():
    """Current Compose builds every service at once (buildx bake): an image built FROM (or
    copying from) another service's image would look for it in a registry. Each Dockerfile
    starts from the base image and its own stages only, so build order never matters."""
    dockerfiles = [ROOT / p for p in git_files() if p.rsplit("/", 1)[-1] == "Dockerfile"]
    assert len(dockerfiles) >= 7  # demo-shop
    # demo-shop: else assert len(dockerfiles) >= 6
    assert {str(p.relative_to(ROOT)): foreign_bases(p.read_text()) for p in dockerfiles} == {
        str(p.relative_to(ROOT)): [] for p in dockerfiles
    }
    # The check itself, on the line this project once had.
    assert foreign_bases("ARG APP_IMAGE\nFROM ${APP_IMAGE}\n") == ["FROM ${APP_IMAGE}"]
    assert foreign_bases("FROM ${BASE_IMAGE}\nCOPY --from=djstack/web:dev /x /x\n") != []
    assert foreign_bases("FROM ${BASE_IMAGE} AS a\nFROM scratch\nCOPY --from=a / /\n") == []


def git_files() -> list[str]:
    return subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()


def test_django_and_pgbouncer_know_the_same_replicas_each_on_a_replica_service():
    """DB_REPLICA_NAMES is one variable for both (README "Two read replicas"): whatever .env
    sets, no Django process can be told of a replica PgBouncer has no database for, or the
    reverse; each of PgBouncer's replica hosts is a replica service of this project, so
    `docker compose down -v` removes it and its volume with the primary."""
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "DOCKER_HOST"}}
    for names in ("", "app_replica,app_replica2"):
        env = {**base, **({"DB_REPLICA_NAMES": names} if names else {})}
        result = subprocess.run(
            ["docker", "compose", "--profile", "*", "config", "--format", "json"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        services = json.loads(result.stdout)["services"]
        pgbouncer = services["pgbouncer"]["environment"]
        expected = names or "app_replica"
        assert pgbouncer["DB_REPLICA_NAMES"] == expected
        for name in DJANGO:
            assert services[name]["environment"]["DB_REPLICA_NAMES"] == expected, name
        hosts = pgbouncer["REPLICA_HOSTS"].split(",")
        assert len(expected.split(",")) <= len(hosts)
        for host in hosts:
            replica = services[host]
            assert replica["environment"]["PG_ROLE"] == "replica", host
            assert not replica.get("profiles"), f"{host} in a profile: down -v would miss it"
    slots = [services[h]["environment"]["REPLICA_SLOT"] for h in hosts]
    assert len(set(slots)) == len(slots), slots
