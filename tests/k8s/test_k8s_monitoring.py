"""Monitoring in the cluster (k8s/components/monitoring): web and the Celery workers carry the
prometheus.io scrape annotations on their metrics ports, only the monitoring namespace may
scrape them, and the alert rules ship as a ConfigMap identical to compose's rules file."""

import pytest
import yaml

from tests.k8s.manifests import K8S, ROOT, Manifests

RULES = ROOT / "monitoring" / "rules" / "alerts.yml"


def test_the_components_rules_are_compose_rules_file():
    copy = K8S / "components" / "monitoring" / "alerts.yml"
    assert copy.read_text() == RULES.read_text(), (
        "cp monitoring/rules/alerts.yml k8s/components/monitoring/alerts.yml"
    )


def test_the_rules_ship_as_a_config_map(deployment: Manifests) -> None:
    config_map = deployment.get("ConfigMap", "djstack-alert-rules")
    assert config_map["metadata"]["namespace"] == "djstack"
    assert config_map["data"]["alerts.yml"] == RULES.read_text()
    groups = yaml.safe_load(config_map["data"]["alerts.yml"])["groups"]
    assert sum(1 for g in groups for r in g["rules"] if "alert" in r) >= 18


@pytest.mark.parametrize(("component", "port"), [("web", "8000"), ("worker", "9808")])
def test_metrics_endpoints_are_annotated_for_scraping(
    deployment: Manifests, component: str, port: str
) -> None:
    found = [
        d
        for d in deployment.of_kind("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert found
    for workload in found:
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == "/metrics"


def test_only_the_monitoring_namespace_may_scrape_and_only_the_metrics_ports(
    deployment: Manifests,
) -> None:
    policy = deployment.get("NetworkPolicy", "prometheus-scrape")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert sorted(p["port"] for p in rule["ports"]) == [8000, 9127, 9187, 9808]


HOST_ALERTS = ["HostDiskAlmostFull", "HostMemoryPressure", "HostOomKill"]


def test_host_alerts_ship_and_need_no_node_exporter_of_ours(deployment: Manifests) -> None:
    """Host metrics come from the cluster's own node exporter (k8s/README.md, "Monitoring"):
    the host alerts are in the ConfigMap and name no job, so they fire on its series whatever
    its job is called; and no pod of ours mounts a hostPath (Pod Security "restricted")."""
    rules = yaml.safe_load(deployment.get("ConfigMap", "djstack-alert-rules")["data"]["alerts.yml"])
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    for alert in HOST_ALERTS:
        assert alert in exprs
        assert "job" not in exprs[alert], alert
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
        for workload in deployment.of_kind(kind):
            spec = workload["spec"].get("jobTemplate", workload)["spec"]["template"]["spec"]
            for volume in spec.get("volumes", []):
                assert "hostPath" not in volume, (kind, workload["metadata"]["name"], volume)


# The database exporters (exporters.yaml): their own logins, each password a file of the Secret.
EXPORTERS = {
    "postgres-exporter-primary": ("postgres-exporter", "MONITORING_DB_PASSWORD", "PRIMARY_HOST"),
    # The replica Service by name (any of its pods); the app's metrics cover each replica.
    "postgres-exporter-replica": ("postgres-exporter", "MONITORING_DB_PASSWORD", "db-replica"),
    "pgbouncer-exporter": ("pgbouncer-exporter", "PGBOUNCER_STATS_PASSWORD", None),
}
SECRET_KEYS = {"DJANGO_SECRET_KEY", "DB_PASSWORD", "REDIS_PASSWORD", "REPLICATION_PASSWORD"}


@pytest.mark.parametrize("name", EXPORTERS)
def test_exporters_take_their_password_from_a_secret_file_never_args_or_env(
    deployment: Manifests, name: str
) -> None:
    role, secret, host = EXPORTERS[name]
    pod = deployment.get("Deployment", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The role only: no password, no connection string among the arguments.
    assert container.get("command") is None
    assert container["args"] == [role]
    # No secret as an env value or a secretKeyRef, no whole Secret as envFrom.
    assert "envFrom" not in container
    for item in container["env"]:
        assert "secretKeyRef" not in item.get("valueFrom", {}), item
        assert "PASSWORD" not in item["name"], item
        assert "dev-only-" not in str(item.get("value", "")), item
    # The one key it needs, mounted read-only as /run/secrets/<key> (monitoring/entrypoint.sh).
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in container["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert [(m["mountPath"], m.get("readOnly")) for m in mounts] == [("/run/secrets", True)]
    source = volumes[mounts[0]["name"]]["secret"]
    assert source["secretName"].startswith("djstack-secrets")
    assert source["items"] == [{"key": secret, "path": secret}]
    assert source["defaultMode"] == 0o400
    # Where it connects: the server named in the ConfigMap, as the monitoring logins.
    env = {item["name"]: item for item in container["env"]}
    if host and host.islower():
        assert env["PG_EXPORTER_HOST"]["value"] == host
    if host:
        if host.isupper():
            assert env["PG_EXPORTER_HOST"]["valueFrom"]["configMapKeyRef"]["key"] == host
        assert env["MONITORING_DB_USER"]["valueFrom"]["configMapKeyRef"]["key"] == (
            "MONITORING_DB_USER"
        )
    else:
        assert env["PGBOUNCER_STATS_USER"]["valueFrom"]["configMapKeyRef"]["key"] == (
            "PGBOUNCER_STATS_USER"
        )
    assert deployment.config["MONITORING_DB_USER"] != deployment.config["DB_USER"]
    assert deployment.config["PGBOUNCER_STATS_USER"] != deployment.config["DB_USER"]


def test_each_exporter_gets_its_own_secret_key_and_no_other(deployment: Manifests) -> None:
    for name, (_, secret, _) in EXPORTERS.items():
        pod = deployment.get("Deployment", name)["spec"]["template"]["spec"]
        keys = {
            item["key"]
            for volume in pod["volumes"]
            if "secret" in volume
            for item in volume["secret"].get("items") or [{"key": "<the whole Secret>"}]
        }
        for container in pod["containers"]:
            keys |= {
                item["valueFrom"]["secretKeyRef"]["key"]
                for item in container.get("env") or []
                if "secretKeyRef" in item.get("valueFrom", {})
            }
        assert keys == {secret}, name
        assert not keys & SECRET_KEYS, name


def test_postgres_and_pgbouncer_get_the_monitoring_logins(deployment: Manifests) -> None:
    def env(workload: str) -> dict[str, dict[str, object]]:
        (container,) = deployment.workload(workload)["spec"]["template"]["spec"]["containers"]
        return {item["name"]: item.get("valueFrom", {}) for item in container["env"]}

    primary, pgbouncer = env("db-primary"), env("pgbouncer")
    assert primary["MONITORING_DB_PASSWORD"] == {
        "secretKeyRef": {"name": primary["DB_PASSWORD"]["secretKeyRef"]["name"],  # type: ignore[index]
                         "key": "MONITORING_DB_PASSWORD"}
    }  # fmt: skip
    assert "PGBOUNCER_STATS_PASSWORD" in pgbouncer
    assert "APP_ENV" in pgbouncer


def test_the_exporters_reach_only_what_they_watch_and_prometheus_scrapes_them(
    deployment: Manifests,
) -> None:
    for name, (_, _, host) in EXPORTERS.items():
        annotations = deployment.get("Deployment", name)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == ("9187" if host else "9127")
    egress = deployment.get("NetworkPolicy", "exporters")["spec"]["egress"]
    assert sorted(port["port"] for rule in egress for port in rule["ports"]) == [5432, 6432]
