"""The README's "Make it yours" steps, as written. `make lock` ("Add a dependency"): a package
added to pyproject.toml comes out locked with its hashes in every lock, and no other pin moves
(the real resolver against the package index, in a copy of the dependency files). "Run one
test quickly": its command runs and passes."""

import re
import shutil
import subprocess

from tests.support import ROOT

LOCKS = sorted(p.name for p in ROOT.glob("requirements*.lock"))


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", text, flags=re.M))


def test_make_lock_adds_a_dependency_with_hashes_and_moves_no_other_pin(tmp_path):
    for name in ("Makefile", "pyproject.toml", *LOCKS):
        shutil.copy2(ROOT / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text()
    assert "dependencies = [\n" in text
    pyproject.write_text(
        text.replace("dependencies = [\n", 'dependencies = [\n  "six>=1.16",\n', 1)
    )
    # This checkout's .venv (with its uv); -o venv: the copy's venv is not made.
    subprocess.run(
        ["make", "-o", "venv", "lock", f"VENV={ROOT / '.venv'}", "PYTHON=python3"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    for name in LOCKS:
        before, after = (ROOT / name).read_text(), (tmp_path / name).read_text()
        added = re.search(
            r"^six==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", after, re.M
        )
        assert added is not None, name
        # Every other pin as it was (six itself may have been there already, as a dependency).
        new, old = pins(after), pins(before)
        new.pop("six")
        old.pop("six", None)
        assert new == old, name


def test_the_readmes_one_quick_test_runs_and_passes():
    """README "Make it yours": the command it gives to run one test quickly, as written."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"Run one test quickly: `([^`]+)`", readme)
    assert command is not None
    argv = command[1].split()
    assert argv[0] == ".venv/bin/pytest"
    result = subprocess.run(
        [str(ROOT / argv[0]), *argv[1:], "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    assert re.search(r"\b[1-9]\d* passed", result.stdout)
    assert "deselected" in result.stdout  # one test's worth, not the whole module
