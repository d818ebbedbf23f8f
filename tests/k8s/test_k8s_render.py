"""k8s/ renders offline into valid Kubernetes objects, configured only by documented names."""

import re
import subprocess
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.k8s.manifests import (
    COMPONENT_LINES,
    DEPLOYMENT_IMAGES,
    IMAGE_UIDS,
    K8S,
    KUBERNETES_VERSION,
    NAMESPACE,
    ROOT,
    STAND_INS,  # demo-shop
    Manifests,
    documented_env_names,
    image_name,
    image_tag,
)

# What the web container must get from the ConfigMap and the Secret to start and serve.
WEB_NEEDS = {
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_REPLICA_NAMES",
    "DB_USER",
    "DB_PASSWORD",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_CACHE_HOST",
    "REDIS_CACHE_PORT",
    "REDIS_CACHE_PASSWORD",
    "APP_ENV",
    "PRICE_SERVICE_URL",  # demo-shop
    "RECOMMENDATIONS_SERVICE_URL",  # demo-shop
    "PRICE_TIMEOUT",  # demo-shop
    "RECOMMENDATIONS_TIMEOUT",  # demo-shop
    "UPSTREAM_POOL_SIZE",  # demo-shop
    "UPSTREAM_MAX_BODY_BYTES",  # demo-shop
}
# demo-shop: begin
# The product page's upstream services: the URL setting of each, by stand-in name.
UPSTREAM_URLS = {"price": "PRICE_SERVICE_URL", "recommendations": "RECOMMENDATIONS_SERVICE_URL"}
# demo-shop: end
SECRET_NAMES = {
    "DJANGO_SECRET_KEY",
    "DB_PASSWORD",
    "REDIS_PASSWORD",
    "REDIS_CACHE_PASSWORD",
    "REPLICATION_PASSWORD",
    "EMAIL_HOST_PASSWORD",
    "MONITORING_DB_PASSWORD",
    "PGBOUNCER_STATS_PASSWORD",
}


def test_renders_a_complete_stack_in_its_own_namespace(any_variant: Manifests) -> None:
    kinds = {doc["kind"] for doc in any_variant.docs}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Job", "Service", "Ingress"} <= kinds
    assert [ns["metadata"]["name"] for ns in any_variant.of_kind("Namespace")] == [NAMESPACE]
    for doc in any_variant.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


def test_root_kustomization_is_the_local_overlay(rendered) -> None:
    assert rendered("k8s").docs == rendered("local").docs
    readme = (K8S / "README.md").read_text()
    assert "kubectl apply -k k8s/" in readme
    assert re.search(r"`kubectl apply -k k8s/`[^\n]*local overlay", readme)


def test_every_object_is_valid_for_the_targeted_kubernetes(any_variant: Manifests) -> None:
    # strict: an unknown or misspelt field is an error, as `kubectl apply` would make it.
    for doc in any_variant.docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {error.message}")


def test_readme_states_the_targeted_kubernetes_version() -> None:
    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert f"Kubernetes {major_minor}+" in (K8S / "README.md").read_text()


def test_images_are_ours_and_tagged_with_a_release(any_variant: Manifests) -> None:
    for container in any_variant.containers():
        image = container.spec["image"]
        assert image_name(image) in IMAGE_UIDS, image
        tag = image_tag(image)
        assert tag, f"{container.workload}/{container.name}: {image} has no tag"
        assert tag != "latest", f"{container.workload}/{container.name}: {image}"


def test_each_deployment_runs_its_images_all_set_in_its_overlay(deployment: Manifests) -> None:
    # Six locally (the stack's five and the upstream stand-ins), five in production.
    expected = DEPLOYMENT_IMAGES[deployment.variant]
    assert {image_name(c.spec["image"]) for c in deployment.containers()} == expected
    overlay = "local" if deployment.variant == "k8s" else deployment.variant
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    assert {image_name(entry["name"]) for entry in kustomization["images"]} == expected
    assert len({entry["newTag"] for entry in kustomization["images"]}) == 1


def test_image_tags_are_set_only_by_the_overlays_images_field() -> None:
    for path in [*(K8S / "base").rglob("*.yaml"), *(K8S / "components").rglob("*.yaml")]:
        for image in re.findall(r"^\s*image:\s*(\S+)", path.read_text(), flags=re.MULTILINE):
            assert image_tag(image) is None, f"{path}: {image} (set tags in an overlay's images:)"


def test_one_release_tag_per_rendering(any_variant: Manifests) -> None:
    tags = {image_tag(container.spec["image"]) for container in any_variant.containers()}
    assert len(tags) == 1, tags


def test_secret_holds_only_dev_only_placeholders(any_variant: Manifests) -> None:
    # Rendered from the committed example (or the local overlay's copy of it): a real value
    # here would mean a secret was committed.
    assert set(any_variant.secrets) == SECRET_NAMES
    for name, value in any_variant.secrets.items():
        assert value.startswith("dev-only-"), name


def test_local_overlay_secrets_are_the_committed_example(rendered) -> None:
    example = dict(
        line.split("=", 1)
        for line in (K8S / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert rendered("local").secrets == example


def test_no_secrets_env_is_committed_and_it_is_gitignored() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "k8s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if path.endswith("secrets.env")], tracked
    for path in ("k8s/secrets.env", "k8s/overlays/production/secrets.env"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} is not gitignored"


def test_every_env_name_is_documented_in_env_example(any_variant: Manifests) -> None:
    documented = documented_env_names()
    assert set(any_variant.config) <= documented, set(any_variant.config) - documented
    assert set(any_variant.secrets) <= documented
    for doc in any_variant.workloads:
        # Service links would add REDIS_PORT=tcp://..., PGBOUNCER_SERVICE_HOST and the like.
        assert doc["spec"]["template"]["spec"]["enableServiceLinks"] is False
    for container in any_variant.containers():
        undocumented = any_variant.env_names(container.spec) - documented
        assert not undocumented, f"{container.workload}/{container.name}: {undocumented}"


def test_web_gets_every_setting_it_needs(any_variant: Manifests) -> None:
    web = next(c for c in any_variant.containers() if c.workload == "web" and not c.init)
    missing = WEB_NEEDS - any_variant.env_names(web.spec)
    assert not missing
    assert set(any_variant.config) >= WEB_NEEDS - SECRET_NAMES
    assert set(any_variant.secrets) >= WEB_NEEDS & SECRET_NAMES


def test_secrets_come_from_the_secret_never_the_config_map(any_variant: Manifests) -> None:
    assert not SECRET_NAMES & set(any_variant.config)
    for container in any_variant.containers():
        for item in container.spec.get("env") or []:
            if item["name"] in SECRET_NAMES:
                assert "secretKeyRef" in item.get("valueFrom", {}), item


def test_every_config_and_secret_reference_resolves(any_variant: Manifests) -> None:
    # A missing key is a pod stuck in CreateContainerConfigError.
    for container in any_variant.containers():
        for item in container.spec.get("env") or []:
            source = item.get("valueFrom", {})
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["key"] in any_variant.get("ConfigMap", ref["name"])["data"], ref
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["key"] in any_variant.get("Secret", ref["name"])["data"], ref
        for source in container.spec.get("envFrom") or []:
            ref = source.get("configMapRef") or source["secretRef"]
            kind = "ConfigMap" if "configMapRef" in source else "Secret"
            any_variant.get(kind, ref["name"])


def test_service_names_are_the_hosts_in_the_config(deployment: Manifests) -> None:
    services = {doc["metadata"]["name"] for doc in deployment.of_kind("Service")}
    assert {"web", "nginx", "pgbouncer", "db-primary", "db-replica", "redis"} <= services
    config = deployment.config
    for key in ("DB_HOST", "PRIMARY_HOST", "REDIS_HOST"):
        assert config[key] in services, key
    # One host per replica; the base's one replica is the Service itself.
    assert config["REPLICA_HOSTS"].split(",") == ["db-replica"]
    # nginx.conf proxies to NGINX_UPSTREAM_HOST:8000, web unless the config names another.
    nginx_conf = (ROOT / "nginx" / "nginx.conf").read_text()
    assert re.search(r"^\s*server \$\{NGINX_UPSTREAM_HOST\}:8000[ ;]", nginx_conf, re.M)
    entrypoint = (ROOT / "nginx" / "entrypoint.sh").read_text()
    assert ': "${NGINX_UPSTREAM_HOST:=web}"' in entrypoint
    assert config.get("NGINX_UPSTREAM_HOST", "web") in services
    assert [p["port"] for p in deployment.get("Service", "web")["spec"]["ports"]] == [8000]


# demo-shop: begin
def test_upstream_urls_name_the_stand_ins_locally(rendered) -> None:
    local = rendered("local")
    for name, setting in UPSTREAM_URLS.items():
        url = urlsplit(local.config[setting])
        assert url.scheme == "http", setting
        assert url.hostname == name, setting
        service = local.get("Service", name)
        assert [p["port"] for p in service["spec"]["ports"]] == [url.port], setting
        deployment = local.get("Deployment", name)
        pod = deployment["spec"]["template"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert image_name(container["image"]) == "upstream"
        assert [p["containerPort"] for p in container["ports"]] == [url.port]


def test_production_calls_the_real_upstream_services_not_the_stand_ins(rendered) -> None:
    for variant in ("production", "production-managed"):
        production = rendered(variant)
        services = {doc["metadata"]["name"] for doc in production.of_kind("Service")}
        for name, setting in UPSTREAM_URLS.items():
            assert production.find("Deployment", name) is None, (variant, name)
            assert name not in services, (variant, name)
            # Set in the overlay: the base's default names a stand-in that is not there.
            assert urlsplit(production.config[setting]).hostname not in services, setting
    readme = (K8S / "README.md").read_text()
    assert "test doubles" in readme
    assert "shop-upstream-egress.yaml" in readme


def test_stand_ins_are_the_local_overlays_component_only() -> None:
    local = yaml.safe_load((K8S / "overlays" / "local" / "kustomization.yaml").read_text())
    assert "../../components/upstream-stand-ins" in local["components"]
    production = (K8S / "overlays" / "production" / "kustomization.yaml").read_text()
    assert "upstream-stand-ins" not in production
    assert set(STAND_INS) == set(UPSTREAM_URLS)


# demo-shop: end


def test_managed_services_are_a_one_line_change_each(rendered) -> None:
    production = (K8S / "overlays" / "production" / "kustomization.yaml").read_text()
    for line in COMPONENT_LINES:
        assert production.count(line + "\n") == 1, line
    managed = rendered("production-managed")
    assert not managed.of_kind("StatefulSet")
    assert managed.find("Deployment", "redis-cache") is None
    for name in ("db-primary", "db-replica", "redis", "redis-cache"):
        assert managed.get("Service", name)["spec"]["type"] == "ExternalName", name
        assert managed.find("NetworkPolicy", name) is None, name
    # Everything else is untouched: same workloads, same config.
    production_docs = rendered("production")
    stateless = {
        doc["metadata"]["name"]
        for doc in production_docs.workloads
        if doc["kind"] != "StatefulSet" and doc["metadata"]["name"] != "redis-cache"
    }
    assert stateless == {doc["metadata"]["name"] for doc in managed.workloads}
    assert managed.config == production_docs.config
