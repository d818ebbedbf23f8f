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
    assert sorted(p["port"] for p in rule["ports"]) == [8000, 9808]


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
