"""What a fork starts from: a licence it may use, and one user model the whole code refers to."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

# The MIT licence's grant and its warranty disclaimer, as the SPDX text words them.
MIT_GRANT = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    "software and associated documentation files"
)
MIT_DISCLAIMER = 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND'


def test_the_repository_is_mit_licensed_by_its_contributors() -> None:
    text = " ".join((ROOT / "LICENSE").read_text().split())
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 djstack contributors" in text
    assert MIT_GRANT in text
    assert MIT_DISCLAIMER in text
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()


def test_no_code_imports_django_s_own_user_model() -> None:
    # The user model is settings.AUTH_USER_MODEL (accounts.User): code that imports
    # django.contrib.auth.models.User works on a table that does not exist.
    pattern = re.compile(r"from django\.contrib\.auth\.models import[^\n]*\bUser\b")
    tops = ("app", "tests")
    tops += ("bench",)  # demo-shop
    sources = [path for top in tops for path in (ROOT / top).rglob("*.py")]
    offenders = [
        str(path.relative_to(ROOT)) for path in sources if pattern.search(path.read_text())
    ]
    assert offenders == []


def runtime_user_model_imports(source: str) -> list[int]:
    """Lines that import accounts' User model for use at run time: anywhere but inside an
    `if TYPE_CHECKING:` block, where the import is for annotations only."""
    tree = ast.parse(source)
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if id(node) not in typing_only
        and (
            (
                isinstance(node, ast.ImportFrom)
                and node.module == "accounts.models"
                and any(alias.name in ("User", "*") for alias in node.names)
            )
            or (
                isinstance(node, ast.Import)
                and any(alias.name == "accounts.models" for alias in node.names)
            )
        )
    ]


def test_code_outside_accounts_reaches_the_user_model_through_get_user_model() -> None:
    """A fork that swaps AUTH_USER_MODEL changes one setting: outside the accounts app, code
    asks get_user_model() (foreign keys: settings.AUTH_USER_MODEL) and imports the class only
    for annotations."""
    sources = [
        path
        for top in ("app", "bench/django", "tests/stack/faultapp")  # demo-shop
        # demo-shop: else for top in ("app", "tests/stack/faultapp")
        for path in (ROOT / top).rglob("*.py")
        if "migrations" not in path.parts and not path.is_relative_to(ROOT / "app" / "accounts")
    ]
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if (lines := runtime_user_model_imports(path.read_text()))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("from accounts.models import User\n", [1]),
        ("import accounts.models\n", [1]),
        ("def f():\n    from accounts.models import ApiToken, User\n", [2]),
        (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from accounts.models import User\n",
            [],
        ),
        ("from accounts.models import ApiToken\n", []),
    ],
)
def test_the_user_model_check_tells_a_run_time_import_from_an_annotation(
    source: str, lines: list[int]
) -> None:
    assert runtime_user_model_imports(source) == lines


def test_debug_a_502_names_each_host_resource_with_an_alert_that_exists() -> None:
    # The README's steps point at alerts the rules define (monitoring/rules), so following them
    # leads somewhere; the alerts themselves fire in tests/monitoring and tests/stack.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Debug a 502", 1)[1].split("\n### ", 1)[0]
    rules = "".join(p.read_text() for p in (ROOT / "monitoring" / "rules").glob("*.yml"))
    for resource, alert in (
        ("Disk", "HostDiskAlmostFull"),
        ("Memory", "HostMemoryPressure"),
        ("OOM", "HostOomKill"),
    ):
        assert f"- {resource}" in section, resource
        assert alert in section, resource
        assert f"alert: {alert}" in rules, alert


def _collected(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: none selected
    return {line for line in result.stdout.splitlines() if "::" in line}


# demo-shop: begin
def test_the_demo_shop_s_tests_are_marked_to_go_with_it() -> None:
    # README "Make it yours": `pytest -m "not demo_shop"` is what is left once app/shop is gone.
    demo = ("tests/app/shop/", "tests/app/reports/", "tests/stack/test_shop.py")
    marked = _collected("-m", "demo_shop", "tests/app", "tests/stack/test_shop.py")
    assert {t for t in _collected(*demo) if t.startswith(demo)} <= marked
    assert any(t.startswith("tests/app/shop/") for t in marked)
    imports = re.compile(r"^\s*(from|import) (shop|reports|tests\.app\.shop)\b", re.MULTILINE)
    rest = {t.split("::")[0] for t in _collected("-m", "not demo_shop", "tests/app")}
    assert rest
    assert [path for path in rest if imports.search((ROOT / path).read_text())] == []


# demo-shop: end


# The environment is read in settings (config/settings.py, through config/env.py) and, for what
# Gunicorn needs before Django exists, in runtime/config.py: each variable once, with one default.
ENV_READERS = {"config/settings.py", "config/env.py", "runtime/config.py"}
# Reads allowed elsewhere, by (file, variable): none.
ENV_READS_ALLOWED: set[tuple[str, str]] = set()


def _env_reads(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, variable) of each use of os.environ, os.getenv (or environ/getenv imported from os),
    except the entry points' os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...), which points
    Django at its settings and reads nothing of the app's configuration."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "os"
        for alias in node.names
        if alias.name in {"environ", "environb", "getenv", "getenvb"}
    }
    # The names the os module is bound to (`import os as _os` too).
    os_names = {"os"} | {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }
    found = []
    for node in ast.walk(tree):
        is_os_attr = (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
            and node.attr in {"environ", "environb", "getenv", "getenvb"}
        )
        is_imported = isinstance(node, ast.Name) and node.id in imported
        if not (is_os_attr or is_imported):
            continue
        # The variable's name: the first string in the call or subscript around the use.
        outer: ast.AST = node
        while isinstance(parents.get(outer), ast.Attribute | ast.Call | ast.Subscript):
            outer = parents[outer]
            if isinstance(outer, ast.Call | ast.Subscript):
                break
        strings = [
            n.value
            for n in ast.walk(outer)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        name = strings[0] if strings else None
        setdefault = (
            isinstance(outer, ast.Call)
            and isinstance(outer.func, ast.Attribute)
            and outer.func.attr == "setdefault"
        )
        if setdefault and name == "DJANGO_SETTINGS_MODULE":
            continue
        found.append((node.lineno, name))
    return found


def test_the_environment_is_read_only_in_settings_and_the_runtime_config() -> None:
    app = ROOT / "app"
    offenders = []
    for path in sorted(app.rglob("*.py")):
        relative = str(path.relative_to(app))
        if relative in ENV_READERS:
            continue
        for line, name in _env_reads(ast.parse(path.read_text(), str(path))):
            if (relative, name) not in ENV_READS_ALLOWED:
                offenders.append(f"app/{relative}:{line} reads {name or 'the environment'}")
    assert offenders == [], (
        "Read environment variables in config/settings.py (config/env.py's helpers) and use "
        "django.conf.settings, or, for Gunicorn and the server runtime, in runtime/config.py: "
        + "; ".join(offenders)
    )


def test_the_env_read_check_sees_every_form_of_read() -> None:
    source = (
        "import os\n"
        "from os import environ, getenv as g\n"
        "a = os.environ.get('A')\n"
        "b = os.environ['B']\n"
        "c = os.getenv('C')\n"
        "d = environ.get('D')\n"
        "e = g('E')\n"
        "f = 'F' in os.environ\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "import os as _os\n"
        "h = _os.environ.get('H')\n"
    )
    found = [name for _, name in sorted(_env_reads(ast.parse(source)), key=lambda r: r[0])]
    assert found == ["A", "B", "C", "D", "E", None, "H"]


def _locked(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", path.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def test_every_lock_satisfies_the_dependency_bounds() -> None:
    """The locks are made by `make lock` from pyproject.toml; a bound tightened by hand (such as
    the pooled runtime's, on the libraries whose internals it uses) must still hold for them."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)
    requirements = [Requirement(r) for r in project["project"]["dependencies"]]
    for lock in sorted(ROOT.glob("requirements*.lock")):
        pins = _locked(lock)
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            if requirement.marker is not None and name not in pins:
                continue  # a platform's package (uvloop off Windows is in every lock anyway)
            assert name in pins, f"{lock.name} does not pin {name}"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock.name} pins {name}=={pins[name]}, outside pyproject.toml's "
                f"{requirement.specifier}: re-lock (make lock)"
            )


def lint_imports(tmp_path: Path, **added: str) -> subprocess.CompletedProcess[str]:
    """The contracts run on a copy of app/ where each module named (`core/errors.py` as
    `core__errors`) ends with one more import."""
    app = tmp_path / "app"
    shutil.copytree(ROOT / "app", app, ignore=shutil.ignore_patterns("__pycache__"))
    for module, imported in added.items():
        with (app / (module.replace("__", "/") + ".py")).open("a") as f:
            f.write(f"\nimport {imported}  # noqa\n")
    command = Path(sys.executable).with_name("lint-imports")
    config = ROOT / "pyproject.toml"
    return subprocess.run(
        [str(command), str(config), "--no-cache"],
        cwd=app, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_layer_contracts_refuse_an_import_against_the_layers(tmp_path: Path) -> None:
    """`make lint` runs the contracts on app/; here, on a copy where core imports a domain and
    a domain imports test code, each is named."""
    result = lint_imports(
        tmp_path,
        core__errors="notifications.models",
        accounts__models="tests.support",
        # The lab's settings modules are top-level names of their own, not under bench or faults.
        notifications__models="fault_settings",
    )
    assert result.returncode != 0
    assert "core is not allowed to import notifications" in result.stdout
    assert "core.errors -> notifications.models" in result.stdout
    assert "accounts.models -> tests (l." in result.stdout
    assert "notifications.models -> fault_settings (l." in result.stdout


def test_every_package_of_the_product_is_in_the_layers() -> None:
    """An app added to app/ (`startapp blog`) that the contracts do not list would be checked by
    none of them: it must be named in root_packages and in a layer."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        linter = tomllib.load(f)["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in linter["contracts"] if c["type"] == "layers"]
    layered = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {p.parent.name for p in (ROOT / "app").glob("*/__init__.py")}
    assert packages == set(linter["root_packages"]) == layered, (
        "Add the package to [tool.importlinter] root_packages and to a layer (pyproject.toml, "
        "docs/ARCHITECTURE.md)"
    )
    # The contract that keeps test and benchmark code out of the product checks only the
    # packages it names as sources: a new app must be one of them too.
    (product,) = [c for c in linter["contracts"] if "tests" in c.get("forbidden_modules", [])]
    assert packages == set(product["source_modules"]), (
        f"Add the package to the source_modules of {product['name']!r} (pyproject.toml)"
    )


# Each domain's declared interface: the modules the other domains may import
# (docs/ARCHITECTURE.md). Every other module is internal, forbidden to them by a contract.
INTERFACES = {
    "shop": {"models", "selectors", "services"},  # demo-shop
    "reports": {"models", "selectors", "services"},  # demo-shop
    "notifications": {"models", "services"},
    "accounts": {"models", "selectors", "services", "auth"},
}


def package_modules(package: Path) -> set[str]:
    """The modules and subpackages directly inside a package."""
    return {
        path.stem
        for path in package.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }


def test_each_domain_s_contract_forbids_every_module_outside_its_interface() -> None:
    """A new module is internal by default: until it is in its domain's forbidden list (or the
    interface, here and in docs/ARCHITECTURE.md) this test fails."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    domains = set(config["root_packages"]) - {"config", "runtime", "core"}
    contracts = {}
    for contract in config["contracts"]:
        owners = {module.split(".")[0] for module in contract.get("forbidden_modules", [])}
        if len(owners) == 1 and owners <= domains:
            contracts[owners.pop()] = contract
    assert contracts.keys() == INTERFACES.keys()
    for domain, interface in INTERFACES.items():
        contract = contracts[domain]
        forbidden = {module.removeprefix(f"{domain}.") for module in contract["forbidden_modules"]}
        assert not forbidden & interface, (domain, forbidden & interface)
        undeclared = package_modules(ROOT / "app" / domain) - forbidden - interface
        assert not undeclared, f"{domain}: {sorted(undeclared)} neither internal nor interface"
        assert set(contract["source_modules"]) == domains - {domain}, domain
        assert contract["allow_indirect_imports"] is True, domain


# demo-shop: begin
def test_the_domain_contracts_refuse_an_import_of_another_domain_s_internals(
    tmp_path: Path,
) -> None:
    """`make lint` runs the contracts on app/; here, on a copy where reports imports shop's
    product-list cache, which is no part of shop's interface."""
    result = lint_imports(tmp_path, reports__selectors="shop.cache")
    assert result.returncode != 0
    assert "shop's interface to the other domains: models, selectors, services BROKEN" in (
        " ".join(result.stdout.split())
    )
    assert "reports is not allowed to import shop.cache" in result.stdout
    assert "reports.selectors -> shop.cache (l." in result.stdout


# demo-shop: end


def test_the_domain_contracts_refuse_an_import_of_accounts_internals(tmp_path: Path) -> None:
    """As above, with the domains that stay without the demo: notifications may import accounts
    (the layer below it), but not its login throttle, which is no part of its interface."""
    result = lint_imports(tmp_path, notifications__models="accounts.throttle")
    assert result.returncode != 0
    assert "accounts' interface to the other domains: models, selectors, services, auth BROKEN" in (
        " ".join(result.stdout.split())
    )
    assert "notifications is not allowed to import accounts.throttle" in result.stdout
    assert "notifications.models -> accounts.throttle (l." in result.stdout
