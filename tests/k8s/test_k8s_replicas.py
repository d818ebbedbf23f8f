"""The second-replica component wires every part: two standby pods with their own slots, a
PgBouncer database on each pod, and Django told of exactly the replicas PgBouncer knows."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.k8s.manifests import ROOT, Manifests, kustomize, production_copy

LINE = "  # - ../../components/second-replica"


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    overlay = production_copy(tmp_path_factory.mktemp("replicas"), managed=False)
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count(LINE + "\n") == 1, "the component's line is not in the production overlay"
    kustomization.write_text(text.replace(LINE, LINE.replace("# ", "", 1)))
    return Manifests("production-replicas", kustomize(overlay))


def _env(manifests: Manifests, workload: str, container: str) -> dict[str, str]:
    """A container's environment as the pod gets it from the ConfigMap and literals."""
    spec = manifests.workload(workload)["spec"]["template"]["spec"]
    (found,) = [c for c in spec["containers"] if c["name"] == container]
    env: dict[str, str] = {}
    if any("configMapRef" in source for source in found.get("envFrom", [])):
        env.update(manifests.config)
    for item in found.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = manifests.config[item["valueFrom"]["configMapKeyRef"]["key"]]
    return env


def test_two_standby_pods_each_stream_through_its_own_slot(two_replicas: Manifests) -> None:
    replica = two_replicas.workload("db-replica")
    assert replica["spec"]["replicas"] == 2
    assert _env(two_replicas, "db-replica", "postgres")["REPLICA_SLOT"] == "auto"
    # The entrypoint's rule for "auto", run for each pod's host name.
    entrypoint = (ROOT / "postgres" / "entrypoint.sh").read_text()
    (rule,) = [line.strip() for line in entrypoint.splitlines() if "slot=replica$((" in line]
    slots = [
        subprocess.run(
            ["sh", "-c", f'slot=auto; {rule}; echo "$slot"'],
            env={"HOSTNAME": f"db-replica-{ordinal}", "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for ordinal in range(2)
    ]
    assert slots == ["replica1", "replica2"]


def test_pgbouncer_gets_a_database_on_each_pod_and_django_the_same_names(
    two_replicas: Manifests, tmp_path: Path
) -> None:
    web = _env(two_replicas, "web", "web")
    pgbouncer = _env(two_replicas, "pgbouncer", "pgbouncer")
    assert web["DB_REPLICA_NAMES"] == pgbouncer["DB_REPLICA_NAMES"] == "app_replica,app_replica2"
    service = two_replicas.get("Service", "db-replica")
    assert service["spec"]["clusterIP"] == "None"  # pod names resolve: db-replica-N.db-replica
    # PgBouncer's own entrypoint renders its databases from that environment.
    template = tmp_path / "pgbouncer.ini.template"
    template.write_text((ROOT / "pgbouncer" / "pgbouncer.ini.template").read_text())
    script = (ROOT / "pgbouncer" / "entrypoint.sh").read_text()
    script = script.replace("/etc/pgbouncer/pgbouncer.ini.template", str(template))
    script = script.replace("RUN_DIR=/tmp/pgbouncer", f"RUN_DIR={tmp_path}/run")
    script = script.replace("/etc/pgbouncer/watch-hosts.sh", str(ROOT / "pgbouncer/watch-hosts.sh"))
    # The first render runs (no name resolves here: each stays a name), the watcher does not.
    run = '"$WATCH_HOSTS" &\nexec pgbouncer "$RUN_DIR/pgbouncer.ini"'
    assert run in script
    script = script.replace(run, 'cat "$RUN_DIR/pgbouncer.ini"')
    env = {**pgbouncer, "DB_PASSWORD": "x", "APP_ENV": "local", "PATH": os.environ["PATH"]}
    ini = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "app_replica = host=db-replica-0.db-replica port=5432 dbname=app" in ini
    assert "app_replica2 = host=db-replica-1.db-replica port=5432 dbname=app" in ini
    # Each server again for the health checks (DB_CHECK_SUFFIX), in a pool of its own.
    for name, host in [
        ("app", "db-primary"),
        ("app_replica", "db-replica-0.db-replica"),
        ("app_replica2", "db-replica-1.db-replica"),
    ]:
        assert (
            f"{name}_check = host={host} port=5432 dbname=app pool_size=2 reserve_pool_size=0"
        ) in ini
    # A suffix that names one of the app's databases would replace it: refused at start.
    clash = {**env, "DB_CHECK_SUFFIX": "_replica"}
    result = subprocess.run(["sh", "-c", script], env=clash, capture_output=True, text=True)
    assert result.returncode != 0
    assert "makes app_replica, one of the app's databases" in result.stderr
    # Half of it (a name with no host) stops PgBouncer at start.
    half = {**env, "REPLICA_HOSTS": "db-replica-0.db-replica"}
    result = subprocess.run(["sh", "-c", script], env=half, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DB_REPLICA_NAMES and REPLICA_HOSTS do not match" in result.stderr
