"""README "Make it yours", "Add an app": its steps, as written, on a copy of the repository.

`startapp blog`, then the edits the README lists in pyproject.toml's [tool.importlinter]: the
contracts pass, and so do the repository's checks that every package is in the layers and that
each domain's contract names every other domain as a source.
"""

import re
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.test_rename import copy_of_the_repository

BIN = Path(sys.executable).parent


def add_an_app_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("Add an app") : readme.index("Add a dependency")]


def test_the_readme_names_every_list_a_new_app_joins() -> None:
    steps = " ".join(add_an_app_section().split())
    for step in ("`root_packages`", "layers contract", "`source_modules` of every other domain"):
        assert step in steps, step


def copy_with_a_blog_app(tmp_path: Path, *, in_the_product_s_contract: bool) -> Path:
    """A copy with `startapp blog` and the README's pyproject edits: root_packages; the layer
    just below config (beside the other top domains); every source_modules list (each domain's
    interface contract and, unless told not to, the no-test-code one)."""
    copy = copy_of_the_repository(tmp_path / "repo")
    subprocess.run(
        [str(BIN / "django-admin"), "startapp", "blog"], cwd=copy / "app", check=True,
        capture_output=True,
    )  # fmt: skip
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r"(?m)^(root_packages = \[)", r'\1"blog", ', text, count=1)
    text = re.sub(r'(?m)^(layers = \["config", ")', r"\1blog | ", text, count=1)
    product = (
        len(text) if in_the_product_s_contract else text.index("the product imports no benchmark")
    )
    head, tail = text[:product], text[product:]
    pyproject.write_text(re.sub(r"(?m)^(source_modules = \[)", r'\1"blog", ', head) + tail)
    return copy


def test_a_new_app_added_as_the_readme_says_passes_the_contracts(tmp_path: Path) -> None:
    copy = copy_with_a_blog_app(tmp_path, in_the_product_s_contract=True)
    contracts = subprocess.run(
        [str(BIN / "lint-imports"), "../pyproject.toml", "--no-cache"], cwd=copy / "app",
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert contracts.returncode == 0, contracts.stdout[-3000:]
    repository = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/test_repository.py::test_every_package_of_the_product_is_in_the_layers",
            "tests/test_repository.py::"
            "test_each_domain_s_contract_forbids_every_module_outside_its_interface",
        ],
        cwd=copy, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert repository.returncode == 0, repository.stdout[-3000:]


def test_a_new_app_left_out_of_the_product_s_contract_fails_the_repository_test(
    tmp_path: Path,
) -> None:
    # Every step of the README but one: the contract keeping test code out of the product.
    copy = copy_with_a_blog_app(tmp_path, in_the_product_s_contract=False)
    repository = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/test_repository.py::test_every_package_of_the_product_is_in_the_layers",
        ],
        cwd=copy, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert repository.returncode != 0
    assert "source_modules of 'the product imports no benchmark" in repository.stdout
