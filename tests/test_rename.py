"""`make rename NAME=...` (bin/rename) on a copy of the repository: the fork keeps working.

The copy is what a forker has: the tracked files in a fresh git repository with one commit.
After the rename no trace of the old name is left (but the licence's copyright line), and lint,
compose, the Kubernetes renderings and their offline tests all pass in the copy.
"""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

# As long as a name may be (32): every line that names the project still fits make lint's width.
NEW = "acme-store-with-the-longest-name"
# The MIT licence asks that its copyright notice be kept: bin/rename leaves such lines alone.
KEPT_LINE = "Copyright (c)"
# The tools of the virtualenv running these tests: the copy has none of its own.
BIN = Path(sys.executable).parent
# Only what compose and kubectl need: no IMAGE_* or COMPOSE_* from the caller's shell.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "DOCKER_HOST"}}
# bin/rename re-wraps the lines the name changed with ruff format: this one.
CLEAN_ENV["RUFF"] = str(BIN / "ruff")


def project_name(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["name"])


OLD = project_name(ROOT)


def sh(
    *args: str, cwd: Path, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, check=check,
        timeout=timeout,
    )  # fmt: skip


def git(copy: Path, *args: str) -> str:
    identity = ("-c", "user.name=test", "-c", "user.email=test@localhost")
    return sh("git", *identity, *args, cwd=copy).stdout


def tracked(copy: Path) -> list[str]:
    return [p for p in git(copy, "ls-files", "-z").split("\0") if p]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_of_the_repository(tmp_path_factory.mktemp("fork") / "repo")


def copy_of_the_repository(copy: Path) -> Path:
    """The repository's files (committed or not, never ignored ones) in a new one-commit repo."""
    listed = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for path in filter(None, listed.stdout.split("\0")):
        source = ROOT / path
        if source.is_file():
            (copy / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / path, follow_symlinks=False)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "fork")
    return copy


LOCAL_ENV = f"IMAGE_REGISTRY={OLD}\n"


@pytest.fixture(scope="module")
def renamed(fresh: Path) -> Path:
    # A forker's own .env (gitignored, secrets in it): named for them to edit, never rewritten.
    (fresh / ".env").write_text(LOCAL_ENV)
    result = sh("make", "rename", f"NAME={NEW}", cwd=fresh, check=False)
    (fresh / ".env").rename(fresh.parent / "env.after")
    (fresh.parent / "rename.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert project_name(fresh) == NEW
    return fresh


def test_an_untracked_env_file_is_named_not_rewritten(renamed: Path) -> None:
    assert f".env (not tracked) still says {OLD}" in (renamed.parent / "rename.out").read_text()
    assert (renamed.parent / "env.after").read_text() == LOCAL_ENV


def test_the_old_name_is_gone_but_from_the_copyright_line(renamed: Path) -> None:
    left = []
    for path in tracked(renamed):
        try:
            text = (renamed / path).read_bytes().decode()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OLD in line.lower() and KEPT_LINE not in line:
                left.append(f"{path}:{number}: {line.strip()}")
    assert left == []
    assert f"{KEPT_LINE} 2026 {OLD} contributors" in (renamed / "LICENSE").read_text()
    assert f'app = Celery("{NEW}")' in (renamed / "app/config/celery.py").read_text()


def test_lint_passes_in_the_renamed_copy(renamed: Path) -> None:
    # The Makefile's lint target itself, with this virtualenv's tools (-o venv: the copy makes
    # none of its own).
    result = sh(
        "make", "-o", "venv", "lint", f"VENV={BIN.parent}", "PYTHON=python3",
        cwd=renamed, check=False, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts:" in result.stdout
    assert "0 broken" in result.stdout


def test_compose_renders_the_new_project_and_images(renamed: Path) -> None:
    for files in ((), ("-f", "docker-compose.yml", "-f", "docker-compose.dev.yml")):
        result = sh("docker", "compose", *files, "--profile", "*", "config", "--format", "json",
                    cwd=renamed, check=False, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert OLD not in result.stdout.lower()
        config = json.loads(result.stdout)
        assert config["name"] == NEW
        images = {service["image"] for service in config["services"].values()}
        assert all(image.startswith(f"{NEW}/") for image in images), images
        web = "web-dev" if files else "web"
        assert config["services"]["web"]["image"] == f"{NEW}/{web}:dev"


def test_every_kubernetes_rendering_lands_in_the_new_namespace(renamed: Path) -> None:
    k8s = renamed / "k8s"
    production = k8s / "overlays" / "production"
    shutil.copy(k8s / "secrets.env.example", production / "secrets.env")
    for path in (k8s, k8s / "overlays" / "local", production):
        result = sh("kubectl", "kustomize", str(path), cwd=renamed, check=False, timeout=60)
        assert result.returncode == 0, result.stderr
        assert OLD not in result.stdout.lower(), path
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        spaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
        assert spaces <= {NEW, None}, (path, spaces)
        assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Namespace"] == [NEW]
    (production / "secrets.env").unlink()


def test_the_kubernetes_tests_pass_in_the_renamed_copy(renamed: Path) -> None:
    # They are offline (kubectl kustomize and the schemas kubernetes-validate ships).
    result = sh(str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/k8s",
                cwd=renamed, check=False, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    "name", ["", "Acme", "ab", "acme_shop", "-acme", "acme-", "9acme", "acme shop", "a" * 33]
)
def test_a_bad_name_is_refused_and_changes_nothing(fresh: Path, name: str) -> None:
    before = git(fresh, "status", "--porcelain") + git(fresh, "diff")
    result = sh("make", "rename", f"NAME={name}", cwd=fresh, check=False)
    assert result.returncode != 0
    assert ("invalid NAME" if name else "usage: make rename NAME=") in result.stderr
    assert git(fresh, "status", "--porcelain") + git(fresh, "diff") == before


# A name the code or configuration already uses as a word: a second rename would rewrite both
# (the compose service web, the Dockerfile's app/; the demo's shop while it is there), and
# make remove-demo could not tell the demo's lines from the name.
@pytest.mark.parametrize("name", ["web", "app"])
def test_a_name_that_is_already_a_word_of_the_code_is_refused(fresh: Path, name: str) -> None:
    before = git(fresh, "status", "--porcelain") + git(fresh, "diff")
    result = sh("make", "rename", f"NAME={name}", cwd=fresh, check=False)
    assert result.returncode != 0
    assert f"{name!r} is already a word of the project, as in " in result.stderr
    assert git(fresh, "status", "--porcelain") + git(fresh, "diff") == before


def test_renaming_again_to_the_same_name_changes_nothing(renamed: Path) -> None:
    before = git(renamed, "diff")
    result = sh("make", "rename", f"NAME={NEW}", cwd=renamed, check=False)
    assert result.returncode == 0, result.stderr
    assert git(renamed, "diff") == before


def test_a_dirty_tree_is_refused_without_force(renamed: Path) -> None:
    before = git(renamed, "diff")
    assert before, "the rename left its changes uncommitted, for review"
    result = sh("make", "rename", "NAME=other-name", cwd=renamed, check=False)
    assert result.returncode != 0
    assert "uncommitted changes" in result.stderr
    assert git(renamed, "diff") == before


def test_a_renamed_fork_can_be_renamed_again(tmp_path: Path) -> None:
    # The name is read from pyproject.toml, never spelled in bin/rename or the tests.
    copy = copy_of_the_repository(tmp_path / "repo")
    for name in (NEW, "beta-store"):
        result = sh("make", "rename", f"NAME={name}", cwd=copy, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        git(copy, "commit", "-q", "-a", "--allow-empty", "-m", f"rename to {name}")
    left = sh("git", "grep", "-n", "-i", "-e", OLD, "-e", NEW, cwd=copy, check=False).stdout
    assert [line for line in left.splitlines() if KEPT_LINE not in line] == []
    result = sh("docker", "compose", "--profile", "*", "config", "--format", "json", cwd=copy)
    assert json.loads(result.stdout)["services"]["web"]["image"] == "beta-store/web:dev"


def test_the_target_runs_the_script_with_the_image_s_python() -> None:
    # Not the shebang's python3: the first on PATH may be older than tomllib (3.11).
    makefile = (ROOT / "Makefile").read_text()
    assert "\n\t@$(PYTHON) bin/rename " in makefile
