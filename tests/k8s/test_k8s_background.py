"""Reports and email in the rendered manifests: the shared media volume, the relay's secret and
egress, and grace periods that follow the Celery time limits the code sets."""

import re

import pytest

from tests.k8s.manifests import ROOT, Manifests
from tests.k8s.test_k8s_network_policies import OUTSIDE, Peer, allowed
from tests.k8s.test_k8s_workloads import HARD_TIME_LIMITS, main_container

SETTINGS = (ROOT / "app" / "config" / "settings.py").read_text()


def setting_pair(name: str) -> tuple[int, int]:
    """`SOFT, HARD = 300, 330` in settings.py."""
    match = re.search(rf"^{name}_SOFT_TIME_LIMIT, {name}_TIME_LIMIT = (\d+), (\d+)", SETTINGS, re.M)
    assert match, name
    return int(match[1]), int(match[2])


def mounts(manifests: Manifests, workload: str) -> dict[str, dict]:
    return {m["name"]: m for m in main_container(manifests, workload).spec.get("volumeMounts", [])}


def volumes(manifests: Manifests, workload: str) -> dict[str, dict]:
    pod = manifests.get("Deployment", workload)["spec"]["template"]["spec"]
    return {v["name"]: v for v in pod.get("volumes", [])}


@pytest.mark.parametrize(
    ("queue", "setting"),
    [
        ("reports", "REPORT"),  # demo-shop
        ("email", "EMAIL"),
        ("default", "CELERY_TASK"),
    ],
)
def test_grace_periods_assume_the_time_limits_the_code_sets(queue: str, setting: str) -> None:
    soft, hard = setting_pair(setting)
    assert soft < hard == HARD_TIME_LIMITS[queue]


# demo-shop: begin
def test_reports_are_written_by_the_reports_worker_and_read_by_nginx_from_one_claim(
    any_variant: Manifests,
) -> None:
    media_root = any_variant.config["MEDIA_ROOT"]
    claim = any_variant.get("PersistentVolumeClaim", "media")
    writer = mounts(any_variant, "worker-reports")["media"]
    reader = mounts(any_variant, "nginx")["media"]
    assert writer["mountPath"] == reader["mountPath"] == media_root == "/srv/media"
    assert not writer.get("readOnly")
    assert reader["readOnly"] is True
    for workload in ("worker-reports", "nginx"):
        volume = volumes(any_variant, workload)["media"]
        # Never an emptyDir: that would be each pod's own disk, and Nginx would find nothing.
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert volumes(any_variant, "nginx")["media"]["persistentVolumeClaim"]["readOnly"] is True
    for workload in ("worker-default", "worker-email", "web", "beat"):
        assert "media" not in volumes(any_variant, workload), workload


# demo-shop: end


def test_the_media_claim_is_shared_across_nodes_except_on_a_one_node_cluster(rendered) -> None:
    for variant in ("production", "production-managed"):
        claim = rendered(variant).get("PersistentVolumeClaim", "media")
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], variant
    local = rendered("local").get("PersistentVolumeClaim", "media")
    assert local["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_email_settings_come_from_the_config_and_the_password_only_to_the_sender(
    any_variant: Manifests,
) -> None:
    for name in (
        "EMAIL_HOST",
        "EMAIL_PORT",
        "EMAIL_USE_TLS",
        "EMAIL_TIMEOUT",
        "DEFAULT_FROM_EMAIL",
    ):
        assert name in any_variant.config, name
    assert "EMAIL_HOST_PASSWORD" in any_variant.secrets
    assert "EMAIL_HOST_PASSWORD" not in any_variant.config
    holders = {
        container.workload
        for container in any_variant.containers()
        if "EMAIL_HOST_PASSWORD" in any_variant.env_names(container.spec)
    }
    assert holders == {"worker-email"}


# The queues whose workers send no mail.
NOT_MAILING = (
    "default",
    "reports",  # demo-shop
)


def test_only_the_email_worker_reaches_an_smtp_relay(deployment: Manifests) -> None:
    def worker(queue: str) -> Peer:
        doc = deployment.get("Deployment", f"worker-{queue}")
        return Peer(dict(doc["spec"]["template"]["metadata"]["labels"]))

    for port in (587, 465, 25):
        assert allowed(deployment, worker("email"), OUTSIDE, port), port
        for queue in NOT_MAILING:
            assert not allowed(deployment, worker(queue), OUTSIDE, port), (queue, port)
        for component in ("web", "nginx", "beat"):
            pod = Peer(deployment.pods_labelled(component))
            assert not allowed(deployment, pod, OUTSIDE, port), (component, port)
    # Mail, not the internet: the same worker reaches nothing else outside.
    assert not allowed(deployment, worker("email"), OUTSIDE, 443)
