"""bin/check-prereqs, which `make test` runs first: each missing host prerequisite is named and
the exit status is 1; on a machine with all of them it passes. The tools it finds are the real
ones, linked into a directory that is the whole PATH, minus the one a test takes away."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "bin/check-prereqs"
TOOLS = ("python3", "docker", "kubectl", "openssl")


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


def check(path: Path, *, open_files: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(path), "PYTHON": "python3"}
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


def test_a_missing_kubectl_is_named(complete, tmp_path):
    result = check(path_with(tmp_path / "k", without="kubectl"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("missing: kubectl")
    assert "1 prerequisite(s) missing" in result.stderr


def test_a_missing_docker_is_named(complete, tmp_path):
    result = check(path_with(tmp_path / "d", without="docker"))
    assert result.returncode == 1
    assert "missing: docker" in result.stderr


def test_a_low_open_file_limit_is_named(complete):
    result = check(complete, open_files=256)
    assert result.returncode == 1
    assert "ulimit -n is 256" in result.stderr


def test_a_python_outside_the_supported_versions_is_named(complete):
    (complete / "python3").unlink()
    (complete / "python3").write_text("#!/bin/sh\necho 3.10\n")
    (complete / "python3").chmod(0o755)
    result = check(complete)
    assert result.returncode == 1
    assert "Python 3.11-3.13: python3 is '3.10'" in result.stderr
