"""k8s/README.md's py-spy recipe ("Debug a live web pod") holds for the manifests as rendered:
the container it targets, the process it names, the Pod Security label it relaxes and restores,
and a custom profile that grants what py-spy needs."""

import json
import re

from tests.k8s.manifests import K8S, NAMESPACE, Manifests

ENFORCE = "pod-security.kubernetes.io/enforce"


def section() -> str:
    readme = (K8S / "README.md").read_text()
    start = readme.index("## Debug a live web pod")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_recipe_relaxes_the_namespace_s_enforced_level_and_puts_it_back(
    deployment: Manifests,
) -> None:
    labels = deployment.get("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels[ENFORCE] == "restricted"
    label = f"kubectl label --overwrite namespace {NAMESPACE} {ENFORCE}="
    commands = [line.strip() for line in section().splitlines() if line.strip().startswith(label)]
    assert commands == [label + "privileged", label + labels[ENFORCE]]
    # Audit and warn stay as they are: the README says each pod made meanwhile is still reported.
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_the_recipe_targets_the_web_container_whose_first_process_is_gunicorn(
    deployment: Manifests,
) -> None:
    text = section()
    (target,) = set(re.findall(r"--target=([\w-]+)", text))
    pod = deployment.workload("web")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == target]
    # `py-spy dump --pid 1`: the image's CMD (gunicorn) runs as the container's first process.
    assert "command" not in container
    assert "args" not in container
    assert "--pid 1 --subprocesses" in text
    assert f"-l app.kubernetes.io/component={target}" in text
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_custom_profile_runs_py_spy_as_root_with_sys_ptrace() -> None:
    text = section()
    (profile,) = re.findall(r"cat > ptrace\.json <<'EOF'\n\s*(\{.*\})\n\s*EOF", text)
    assert json.loads(profile) == {
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "capabilities": {"add": ["SYS_PTRACE"]},
        }
    }
    assert "--profile=general --custom=ptrace.json" in text
