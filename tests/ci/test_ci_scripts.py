"""The CI install path's pure part: finding the host's Debian mirror. It runs first on a machine
with nothing installed, under `set -euo pipefail`, so a missing file must never end it."""

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian-security
Suites: trixie-security
Components: main

Types: deb
URIs: http://mirror.example/debian
Suites: trixie trixie-updates
Components: main
"""


def mirror(apt_etc: Path) -> subprocess.CompletedProcess[str]:
    script = f"set -euo pipefail; source {ROOT / '.ci/docker.sh'}; debian_mirror; echo end"
    return subprocess.run(
        ["bash", "-c", script],
        env={"APT_ETC": str(apt_etc), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("sources.list.d/debian.sources", DEB822),
        ("sources.list", "deb [arch=amd64] http://mirror.example/debian trixie main\n"),
        ("sources.list.d/debian.list", "deb http://mirror.example/debian/ trixie main\n"),
    ],
)
def test_the_mirror_is_found_in_any_apt_source_format(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / name).write_text(text)
    result = mirror(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].rstrip("/") == "http://mirror.example/debian"


def test_no_sources_at_all_is_an_empty_answer_not_an_exit(tmp_path: Path) -> None:
    result = mirror(tmp_path)
    assert (result.returncode, result.stdout) == (0, "end\n"), result.stderr


def test_disabled_and_foreign_sources_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/cloud.list.disabled").write_text(
        "deb http://other.example/debian stable main\n"
    )
    (tmp_path / "sources.list.d/node.sources").write_text(
        "Types: deb\nURIs: https://node.example/node_20.x\nSuites: nodistro\n"
    )
    assert mirror(tmp_path).stdout == "end\n"
