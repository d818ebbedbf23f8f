"""Renders k8s/ with `kubectl kustomize` and answers questions about the rendered objects."""

import base64
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
NAMESPACE = "djstack"
# The Kubernetes release the manifests target (k8s/README.md); kubernetes-validate ships its schema.
KUBERNETES_VERSION = "1.32.0"

# What `kubectl kustomize` renders in these tests. "production" needs a secrets.env: the tests
# write it from the committed example into a copy of k8s/. "production-managed" is the same with
# the two optional components (managed Postgres, managed Redis) switched on.
DEPLOYMENTS = ("k8s", "local", "production")
VARIANTS = (*DEPLOYMENTS, "production-managed")
COMPONENT_LINES = (
    "  # - ../../components/external-database",
    "  # - ../../components/external-redis",
)

# Fixed UIDs of the images (each Dockerfile), by image name. "upstream" is the test double of the
# product page's upstream services (upstream/): the local overlay runs it, production does not.
IMAGE_UIDS = {
    "web": 10001,
    "nginx": 10002,
    "pgbouncer": 10003,
    "postgres": 10004,
    "redis": 10005,
    "upstream": 10006,  # demo-shop
    "monitoring": 10008,
}
# The images each deployment runs: the stack's five and the exporters' (components/monitoring)
# everywhere, the stand-ins only locally.
STACK_IMAGES = {"web", "nginx", "pgbouncer", "postgres", "redis", "monitoring"}
DEPLOYMENT_IMAGES = {
    "k8s": STACK_IMAGES,
    "local": STACK_IMAGES,
    "production": STACK_IMAGES,
}
# demo-shop: begin
DEPLOYMENT_IMAGES["k8s"] = DEPLOYMENT_IMAGES["local"] = STACK_IMAGES | {"upstream"}
# The upstream services' stand-ins (k8s/components/upstream-stand-ins), by component label.
STAND_INS = ("price", "recommendations")
# demo-shop: end
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")

Doc = dict[str, Any]


def kustomize(path: Path) -> list[Doc]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def production_copy(workdir: Path, *, managed: bool) -> Path:
    """A copy of k8s/ with secrets.env written from the example, as a user would."""
    copy = workdir / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    overlay = copy / "overlays" / "production"
    shutil.copy(copy / "secrets.env.example", overlay / "secrets.env")
    if managed:
        kustomization = overlay / "kustomization.yaml"
        text = kustomization.read_text()
        for line in COMPONENT_LINES:
            assert text.count(line + "\n") == 1, f"{line!r} not found once in {kustomization}"
            text = text.replace(line + "\n", line.replace("# ", "", 1) + "\n")
        kustomization.write_text(text)
    return overlay


def render(variant: str, workdir: Path) -> list[Doc]:
    if variant == "k8s":
        return kustomize(K8S)
    if variant == "local":
        return kustomize(K8S / "overlays" / "local")
    return kustomize(production_copy(workdir, managed=variant == "production-managed"))


def documented_env_names() -> set[str]:
    """Every NAME of a `NAME=value` line in .env.example: the one list of settings."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def image_name(image: str) -> str:
    """ "web" for registry.example.com:5000/djstack/web:1.2.3."""
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def image_tag(image: str) -> str | None:
    last = image.rsplit("/", 1)[-1].split("@", 1)[0]
    return last.split(":", 1)[1] if ":" in last else None


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number: 500m -> 0.5, 1Gi -> 1073741824."""
    text = str(value)
    units = {
        "m": 1e-3,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
    }
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def labels_match(selector: Doc, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector against a set of labels; {} matches everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Container:
    workload: str
    kind: str
    name: str
    init: bool
    spec: Doc
    pod: Doc


@dataclass(frozen=True)
class Manifests:
    variant: str
    docs: list[Doc]

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def find(self, kind: str, name: str) -> Doc | None:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        return None

    def get(self, kind: str, name: str) -> Doc:
        doc = self.find(kind, name)
        assert doc is not None, f"{self.variant}: no {kind} {name}"
        return doc

    @property
    def workloads(self) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] in WORKLOAD_KINDS]

    def workload(self, name: str) -> Doc:
        for doc in self.workloads:
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.variant}: no workload {name}")

    @property
    def workers(self) -> list[Doc]:
        return [
            doc
            for doc in self.of_kind("Deployment")
            if doc["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
            == "worker"
        ]

    def containers(self) -> Iterator[Container]:
        for doc in self.workloads:
            pod = doc["spec"]["template"]["spec"]
            for init, key in ((True, "initContainers"), (False, "containers")):
                for spec in pod.get(key) or []:
                    yield Container(
                        doc["metadata"]["name"], doc["kind"], spec["name"], init, spec, pod
                    )

    @cached_property
    def config(self) -> dict[str, str]:
        # The app's settings; the alert rules' ConfigMap (components/monitoring) is not one.
        (config_map,) = [
            c
            for c in self.of_kind("ConfigMap")
            if c["metadata"]["name"].startswith("djstack-config")
        ]
        return dict(config_map["data"])

    @cached_property
    def secrets(self) -> dict[str, str]:
        (secret,) = self.of_kind("Secret")
        return {
            key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()
        }

    def env_names(self, container: Doc) -> set[str]:
        """Every variable a container gets from env and envFrom (ConfigMap or Secret keys)."""
        names = {item["name"] for item in container.get("env") or []}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.get("ConfigMap", source["configMapRef"]["name"])["data"]
            else:
                data = self.get("Secret", source["secretRef"]["name"])["data"]
            names |= {prefix + key for key in data}
        return names

    def pods_labelled(self, component: str) -> Doc:
        """The pod template labels of the workload whose component label is `component`."""
        for doc in self.workloads:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            if labels.get("app.kubernetes.io/component") == component:
                return dict(labels)
        raise AssertionError(f"{self.variant}: no pods with component {component}")
