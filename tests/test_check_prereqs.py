"""bin/check-prereqs, which `make test` runs first: each missing host prerequisite is named and
the exit status is 1; on a machine with all of them it passes. The tools it finds are the real
ones, linked into a directory that is the whole PATH, minus the one a test takes away."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "bin/check-prereqs"
TOOLS = ("python3", "docker", "kubectl", "openssl", "chromium")
IMAGE_PYTHON = re.search(r"^IMAGE_PYTHON := (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1]


def real(tool: str) -> str | None:
    """The binary itself: a wrapper on PATH (pyenv's shims) needs the rest of PATH to run."""
    if tool == "python3":
        return str(Path(sys.executable).resolve())
    found = shutil.which(tool)
    return str(Path(found).resolve()) if found else None


def path_with(tmp_path: Path, *, without: str = "") -> Path:
    directory = tmp_path / "bin"
    directory.mkdir(parents=True)
    for tool in TOOLS:
        found = real(tool)
        if tool != without and found:
            (directory / tool).symlink_to(found)
    return directory


def check(
    path: Path, *, open_files: int | None = None, python: str = "python3", origin: str = "file"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": str(path),
        "PYTHON": python,
        "PYTHON_ORIGIN": origin,
        "REQUIRED_PYTHON": IMAGE_PYTHON,
    }
    limit = f"ulimit -n {open_files}; " if open_files else ""
    return subprocess.run(
        ["/bin/sh", "-c", f'{limit}exec "{SCRIPT}"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def complete(tmp_path: Path) -> Path:
    missing = [tool for tool in TOOLS if not real(tool)]
    if missing:
        pytest.skip(f"this machine lacks {missing}: no complete PATH to start from")
    return path_with(tmp_path)


def test_a_machine_with_everything_passes(complete):
    result = check(complete)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Which Python the venv will be made from, since bin/find-python may pick one off PATH.
    assert result.stdout.startswith(f"prerequisites: ok (Python {IMAGE_PYTHON}.")
    assert result.stdout.rstrip().endswith(f"at {complete / 'python3'})")


def test_a_missing_kubectl_is_named(complete, tmp_path):
    result = check(path_with(tmp_path / "k", without="kubectl"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("missing: kubectl")
    assert "1 prerequisite(s) missing" in result.stderr


def test_a_missing_chromium_is_named(complete, tmp_path):
    result = check(path_with(tmp_path / "c", without="chromium"))
    assert result.returncode == 1
    assert "missing: chromium, headless, for the browser checks" in result.stderr


def test_a_python_without_venv_is_named(complete):
    (complete / "python3").unlink()
    script = f'#!/bin/sh\ncase "$2" in *ensurepip*) exit 1;; esac\necho {IMAGE_PYTHON}\n'
    (complete / "python3").write_text(script)
    (complete / "python3").chmod(0o755)
    result = check(complete)
    assert result.returncode == 1
    assert "missing: Python's venv module with ensurepip for python3" in result.stderr


@pytest.mark.parametrize(("origin", "named"), [("environment", True), ("file", False)])
def test_a_python_set_by_the_user_but_absent_is_named_as_their_setting(complete, origin, named):
    result = check(complete, python="/nonexistent/python", origin=origin)
    assert result.returncode == 1
    assert (
        "PYTHON=/nonexistent/python (from your environment) is not found" in result.stderr
    ) is named


def test_a_missing_docker_is_named(complete, tmp_path):
    result = check(path_with(tmp_path / "d", without="docker"))
    assert result.returncode == 1
    assert "missing: docker" in result.stderr


def test_a_low_open_file_limit_is_named(complete):
    result = check(complete, open_files=256)
    assert result.returncode == 1
    assert "ulimit -n is 256" in result.stderr


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.14"])
def test_a_python_other_than_the_images_is_named(complete, version):
    (complete / "python3").unlink()
    (complete / "python3").write_text(f"#!/bin/sh\necho {version}\n")
    (complete / "python3").chmod(0o755)
    result = check(complete)
    assert result.returncode == 1
    assert f"Python {IMAGE_PYTHON}, the runtime image's: python3 is '{version}'" in result.stderr


def fake_python(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def find_python(tmp_path: Path, *, pyenv_root: Path) -> str:
    """bin/find-python with only the system's directories on PATH (no python3.x of ours)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYENV_ROOT": str(pyenv_root)}
    return subprocess.run(
        [ROOT / "bin/find-python", IMAGE_PYTHON],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()


def test_find_python_takes_the_newest_pyenv_install_of_the_images_minor(tmp_path):
    root = tmp_path / "pyenv"
    fake_python(root / f"versions/{IMAGE_PYTHON}.2/bin/python{IMAGE_PYTHON}", IMAGE_PYTHON)
    newest = fake_python(
        root / f"versions/{IMAGE_PYTHON}.10/bin/python{IMAGE_PYTHON}", IMAGE_PYTHON
    )
    # A broken install of the right name is passed over: its answer decides, not its path.
    fake_python(root / f"versions/{IMAGE_PYTHON}.11/bin/python{IMAGE_PYTHON}", "3.12")
    assert find_python(tmp_path, pyenv_root=root) == str(newest)


def test_find_python_names_the_missing_interpreter_for_check_prereqs(tmp_path):
    assert find_python(tmp_path, pyenv_root=tmp_path / "none") == f"python{IMAGE_PYTHON}"


@pytest.mark.parametrize("version", ["3.11", "3.12"])
def test_make_venv_refuses_a_python_other_than_the_images(tmp_path, version):
    """`PYTHON=python3 make venv` with another Python must not make a venv stamped as the
    image's, which later runs would take for the right one."""
    for name in ("Makefile", "requirements-dev.lock", "bin/find-python"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    python = fake_python(tmp_path / "fake" / "python3", version)
    result = subprocess.run(
        ["make", "venv", f"PYTHON={python}", f"VENV={tmp_path / '.venv'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"is Python '{version}', not the image's {IMAGE_PYTHON}" in result.stderr
    assert not (tmp_path / ".venv").exists()
