"""`make remove-demo` (bin/remove-demo) on a copy of the repository: what is left works.

The copy is what a forker has (tests/test_rename.py's copy). After the removal no code, test or
configuration imports the shop or the reports or installs them as an app, and lint, Django's
checks, compose, the Kubernetes renderings and the remaining unit tests all pass in the copy.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.test_rename import copy_of_the_repository, git

# The tools of the virtualenv running these tests: the copy has none of its own.
BIN = Path(sys.executable).parent
# Only what compose, kubectl and the unit suite's containers need from the caller's shell.
KEPT = {"PATH", "HOME", "DOCKER_HOST", "IMAGE_TAG", "IMAGE_REGISTRY"}
CLEAN_ENV = {k: v for k, v in os.environ.items() if k in KEPT}
CLEAN_ENV["RUFF"] = str(BIN / "ruff")
CLEAN_ENV["TESTCONTAINERS_RYUK_DISABLED"] = "true"
DEMO = ("shop", "reports")
# The demo as code sees it: an import, an app label or a task name, a dotted path into it.
MENTION = re.compile(
    r"^\s*(from|import) (shop|reports)\b"
    r"|[\"'](shop|reports)[\"']"
    r"|[\"'](shop|reports)\.\w+"
    r"|\b(app|tests/app)/(shop|reports)/",
    re.MULTILINE,
)
# Where code, tests and configuration live. Not scanned: docs/, which describe the demo;
# tests/stack/, whose workload is the product API over HTTP (README "Make it yours": point them at
# your own endpoints); the alert rules' unit tests, whose made-up series name a queue "reports";
# and this file.
SCANNED = (".py", ".toml", ".yml", ".yaml", ".cfg", ".ini", ".env", ".example", "Makefile")
NOT_SCANNED = ("docs/", "tests/stack/", "monitoring/tests/", "tests/test_remove_demo.py")
FENCE = re.compile(r"^\s*#\s*demo-shop\b|#\s*demo-shop\s*$", re.MULTILINE)
# The unit tests of what stays, run in the copy (the runtime's own start Gunicorn and take long,
# and depend on no domain); every suite is collected.
UNIT_TESTS = ("tests/app/accounts", "tests/app/notifications", "tests/app/core", "tests/app/config")
# The offline checks of the configuration that stays: compose, Kubernetes, the alert rules, the
# layout. (The copy's own rename and lock tests would copy it again: left to the full suite.)
OFFLINE_TESTS = (
    "tests/k8s",
    "tests/monitoring/test_monitoring_config.py",
    "tests/test_configuration.py",
    "tests/test_compose.py",
    "tests/test_comments.py",
    "tests/test_repository.py",
    "tests/test_add_an_app.py",
    "tests/test_check_prereqs.py",
)


def sh(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, check=False,
        timeout=timeout,
    )  # fmt: skip


def remove_demo(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The Makefile's target, with this virtualenv's Python and ruff (-o venv: none of its own)."""
    return sh("make", "-o", "venv", "remove-demo", f"PYTHON={BIN / 'python'}", *args, cwd=copy)


@pytest.fixture(scope="module")
def removed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = copy_of_the_repository(tmp_path_factory.mktemp("fork") / "repo")
    result = remove_demo(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    # This virtualenv as the copy's own (never committed): tests that start its tools find them.
    (copy / ".venv").symlink_to(BIN.parent)
    with (copy / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("/.venv\n")
    # Committed, as the user would after reviewing: tests that list git's files see the result.
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "demo removed")
    return copy


def test_the_demo_s_apps_tests_and_bench_are_gone(removed: Path) -> None:
    for path in ("app/shop", "app/reports", "tests/app/shop", "tests/app/reports", "bench"):
        assert not (removed / path).exists(), path
    assert (removed / "app/notifications").is_dir()
    assert (removed / "app/accounts").is_dir()


def test_the_tests_of_what_stays_stay(removed: Path) -> None:
    # Their demo cases are fenced or live in the demo's own test modules.
    for path in ("tests/app/core/test_admin.py", "tests/app/core/test_db_router.py"):
        assert (removed / path).is_file(), path


def test_files_with_generic_names_stay(removed: Path) -> None:
    # Only demo-named files go whole: a forker's edits to a generic one are never lost with it.
    production = removed / "k8s/overlays/production"
    assert not (production / "reports-resources.yaml").exists()
    assert not (production / "shop-upstream-egress.yaml").exists()
    assert (production / "scaling.yaml").is_file()


def test_nothing_imports_or_installs_the_demo(removed: Path) -> None:
    left = []
    for path in git(removed, "ls-files", "-z").split("\0"):
        file = removed / path
        if not file.is_file() or path.startswith(NOT_SCANNED):
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if FENCE.search(line) or (path.endswith(SCANNED) and MENTION.search(line)):
                left.append(f"{path}:{number}: {line.strip()}")
    assert left == []


# The demo's names as code and configuration use them: an env name (NGINX_RATE_REPORTS), a path
# segment (bench/), a quoted or listed name (a queue, an app label, a regex's alternative, a
# worker), a class named after it. Comments are not scanned: they may tell the demo's history.
LEFTOVER = re.compile(
    r"\b(?:[A-Z0-9]+_)*(?:REPORTS?|SHOP|BENCH)(?:_[A-Z0-9]+)*\b"
    r"|(?<![\w.-])(?:shop|reports|bench)/|/(?:shop|reports|bench)\b"
    r"|[\"'|~=:\[ ](?:shop|reports|bench)[\"'|@.\]]"
    r"|\bShop[A-Z]\w*|\b\w+Shop\b|\bworker-reports\b|\bbench_\w+|\bshop@"
)
LEFTOVER_FILES = (*SCANNED, ".conf", ".sh", ".template", "Dockerfile", ".dockerignore")
# What may still say it, and why.
ALLOWED = {
    # The guards that keep benchmark code out of the product and its image stay, bench or not.
    "pyproject.toml": '"bench", "bench_endpoints", "bench_settings", "bench_urls"',
    "tests/images/test_images.py": "bench|BENCH",
    # Names bin/rename must refuse.
    "tests/test_rename.py": "acme_shop",
}


def test_no_leftover_names_the_demo(removed: Path) -> None:
    left = []
    for path in git(removed, "ls-files", "-z").split("\0"):
        file = removed / path
        if not path.endswith(LEFTOVER_FILES) or path.startswith(NOT_SCANNED):
            continue
        if path.startswith("bin/remove-demo") or not file.is_file():
            continue
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
            code = re.sub(r"(^|\s)@?#.*", "", line)
            allowed = ALLOWED.get(path)
            if LEFTOVER.search(code) and not (allowed and re.search(allowed, code)):
                left.append(f"{path}:{number}: {line.strip()}")
    assert left == []


def test_lint_passes_in_the_copy(removed: Path) -> None:
    # The Makefile's lint target itself, with this virtualenv's tools (-o venv: none of its own).
    result = sh("make", "-o", "venv", "lint", f"VENV={BIN.parent}", "PYTHON=python3", cwd=removed)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "0 broken" in result.stdout
    contracts = result.stdout.split("Contracts")[-1]
    assert not any(name in contracts for name in DEMO)


def test_django_s_checks_and_migrations_agree(removed: Path) -> None:
    python = str(BIN / "python")
    check = sh(python, "manage.py", "check", cwd=removed / "app")
    assert check.returncode == 0, check.stdout + check.stderr
    # No database here: --check only compares the models with the migrations on disk.
    migrations = sh(
        python, "manage.py", "makemigrations", "--check", "--dry-run", cwd=removed / "app"
    )
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr
    assert "No changes detected" in migrations.stdout


def test_compose_and_kubernetes_render_without_the_demo(removed: Path) -> None:
    for files in ((), ("-f", "docker-compose.yml", "-f", "docker-compose.dev.yml")):
        result = sh("docker", "compose", *files, "--profile", "*", "config", cwd=removed)
        assert result.returncode == 0, result.stderr
    k8s = removed / "k8s"
    production = k8s / "overlays" / "production"
    shutil.copy(k8s / "secrets.env.example", production / "secrets.env")
    for path in (k8s, k8s / "overlays" / "local", production):
        result = sh("kubectl", "kustomize", str(path), cwd=removed)
        assert result.returncode == 0, (path, result.stderr)
    (production / "secrets.env").unlink()


def test_the_remaining_unit_tests_pass(removed: Path) -> None:
    # Postgres and Redis from the images `make test` built (tests/app/conftest.py, IMAGE_TAG).
    result = sh(
        str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TESTS,
        cwd=removed, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    # Every suite still collects (make test runs them all): no module imports what is gone.
    collected = sh(str(BIN / "python"), "-m", "pytest", "--co", "-q", "tests", cwd=removed)
    assert collected.returncode == 0, collected.stdout[-5000:] + collected.stderr[-2000:]
    for app in ("accounts", "notifications", "core", "runtime"):
        assert f"tests/app/{app}/" in collected.stdout, app


def test_the_offline_tests_of_the_configuration_pass(removed: Path) -> None:
    result = sh(
        str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *OFFLINE_TESTS,
        cwd=removed, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_a_dirty_tree_is_refused_without_force(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    (copy / "README.md").write_text("edited\n")
    result = remove_demo(copy)
    assert result.returncode != 0
    assert "uncommitted changes" in result.stderr
    assert (copy / "app/shop").is_dir()


def test_the_removal_removed_itself(removed: Path) -> None:
    # Its script, manifest and test need the demo: left behind, they would fail the fork's tests.
    for path in ("bin/remove-demo", "bin/remove-demo.sums", "tests/test_remove_demo.py"):
        assert not (removed / path).exists(), path
    # Run again, make says plainly there is no such target, and nothing changes.
    result = sh("make", "remove-demo", cwd=removed)
    assert result.returncode != 0
    assert "No rule to make target 'remove-demo'" in result.stderr
    assert git(removed, "status", "--porcelain") == ""


def test_what_is_left_of_tests_collects_without_the_demo_or_the_removal(removed: Path) -> None:
    # make test PYTEST_ARGS=--ignore=tests/stack (README "Make it yours") runs what is left.
    collected = sh(
        str(BIN / "python"), "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "tests",
        "--ignore=tests/stack", cwd=removed,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout[-5000:] + collected.stderr[-2000:]
    modules = {line.split("::")[0] for line in collected.stdout.splitlines() if "::" in line}
    assert not [m for m in modules if re.search(r"remove_demo|/(shop|reports|bench)/", m)]
    # Every top-level test module left is collected; those OFFLINE_TESTS names also pass below.
    for module in sorted((removed / "tests").glob("test_*.py")):
        assert f"tests/{module.name}" in modules, module.name


# The demo as the READMEs describe it: its endpoints, settings, services, files and tools. Only a
# line that says "demo" may still name them: it tells what was removed and what is left to do.
PROSE_LEFTOVER = re.compile(
    r"NGINX_RATE_REPORTS|worker-reports|\bREPORT_\w+|api/(products|orders|reports)|make bench"
    r"|stand-ins?\b|reports-resources|upstream-egress|\bshop\b|\breports?\b|\bprice\b"
    r"|recommendations|fan-?out|\bbench\b|aiohttp|/upstream\b|upstream:dev",
    re.IGNORECASE,
)


def test_the_readmes_describe_no_demo_left(removed: Path) -> None:
    left = [
        f"{path}:{number}: {line.strip()}"
        for path in ("README.md", "k8s/README.md")
        for number, line in enumerate((removed / path).read_text().splitlines(), 1)
        if PROSE_LEFTOVER.search(line) and "demo" not in line
    ]
    assert left == []


def test_the_demo_s_dependencies_leave_pyproject(removed: Path) -> None:
    # The locks keep them until `make lock` (network): the README and the script's output say so.
    assert "aiohttp" not in (removed / "pyproject.toml").read_text()


def test_every_path_the_readme_names_still_exists(removed: Path) -> None:
    # A word in backticks that is a tracked path (or a folder of one) of the repository, as it
    # stands or under app/ or tests/, names a path of the copy too: no tour, quick test or
    # section of the README points at what is gone.
    tracked = set(git(ROOT, "ls-files").splitlines())
    tracked |= {str(parent) for path in tracked for parent in Path(path).parents}
    left = []
    readme = (removed / "README.md").read_text()
    for number, line in enumerate(readme.splitlines(), 1):
        for span in re.findall(r"`([^`\n]+)`", line):
            for word in (w.strip(",;:()'\"") for w in span.split()):
                named = [f"{base}{word.rstrip('/')}" for base in ("", "app/", "tests/")]
                if (
                    ("/" in word or "." in word)
                    and any(n in tracked for n in named)
                    and not any((removed / n).exists() for n in named)
                ):
                    left.append(f"README.md:{number}: {word}")
    assert left == []


def test_the_manifest_is_the_shipped_blocks() -> None:
    # Edit a fenced block or a tagged line, then: bin/remove-demo --manifest > bin/remove-demo.sums
    result = sh(sys.executable, "bin/remove-demo", "--manifest", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "bin/remove-demo.sums").read_text()


def snapshot(copy: Path) -> tuple[str, dict[str, str]]:
    """git's view of the copy, and every file's content (ignored ones too)."""
    files = {
        str(p.relative_to(copy)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in copy.rglob("*")
        if p.is_file() and not p.is_symlink() and ".git" not in p.relative_to(copy).parts
    }
    return git(copy, "status", "--porcelain", "--untracked-files=all"), files


def refused(copy: Path, *args: str) -> str:
    before = snapshot(copy)
    result = remove_demo(copy, *args)
    assert result.returncode != 0, result.stdout
    assert snapshot(copy) == before
    return result.stderr


def test_a_file_of_the_user_s_in_a_path_it_deletes_is_refused_even_with_force(
    tmp_path: Path,
) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    (copy / "app/shop/mine.py").write_text("MINE = 1\n")
    (copy / "bench/notes.txt").write_text("mine\n")
    for force in ((), ("FORCE=1",)):
        message = refused(copy, *force)
        assert "app/shop/mine.py: not tracked by git" in message
        assert "bench/notes.txt: not tracked by git" in message


def test_an_uncommitted_edit_in_a_path_it_deletes_is_refused_even_with_force(
    tmp_path: Path,
) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    with (copy / "app/shop/models.py").open("a") as models:
        models.write("# mine\n")
    message = refused(copy, "FORCE=1")
    assert "app/shop/models.py: uncommitted changes" in message


def test_markers_that_do_not_pair_up_change_nothing_and_are_all_named(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    mark = "# demo-" + "shop"  # not a marker in this file
    edits = {
        "app/config/urls.py": f"{mark}: begin\n",  # never closed
        "Makefile": f"{mark}: end\n",  # never opened
        "docker-compose.dev.yml": f"{mark}: begn\n",  # a typo
        "nginx/nginx.conf": f"{mark}: else listen 80;\n",  # below no tagged line
    }
    numbers = {}
    for path, line in edits.items():
        file = copy / path
        text = file.read_text()
        numbers[path] = text.count("\n") + 1
        file.write_text(text + line)
    # A word that only starts like the marker is no marker: it stays, and is not refused.
    (copy / "app/config/asgi.py").write_text(
        (copy / "app/config/asgi.py").read_text() + f"{mark}ping is not a marker\n"
    )
    git(copy, "commit", "-q", "-am", "the user's comments")
    message = refused(copy)
    for path, number in numbers.items():
        assert f"{path}:{number}:" in message, path
    assert "asgi.py" not in message


def test_a_line_of_the_user_s_inside_a_fenced_block_is_refused_unless_forced(
    tmp_path: Path,
) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    settings = copy / "app/config/settings.py"
    lines = settings.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("REPORT_MAX_DAYS"))
    lines.insert(number, "MY_SETTING = 1\n")
    settings.write_text("".join(lines))
    git(copy, "commit", "-q", "-am", "the user's setting")
    message = refused(copy)
    assert f"app/config/settings.py:{number - 1}: this block differs" in message
    forced = remove_demo(copy, "FORCE=1")
    assert forced.returncode == 0, forced.stderr
    assert "MY_SETTING" not in settings.read_text()


def test_the_user_s_beat_entry_stays(tmp_path: Path) -> None:
    # The end of CELERY_BEAT_SCHEDULE, where an entry of one's own goes, is outside the fence.
    copy = copy_of_the_repository(tmp_path / "repo")
    settings = copy / "app/config/settings.py"
    text = settings.read_text()
    start = text.index("CELERY_BEAT_SCHEDULE")
    end = text.index("\n}\n", start)
    mine = '    "my-task": {"task": "mine.run", "schedule": 60.0},'
    settings.write_text(text[:end] + "\n" + mine + text[end:])
    git(copy, "commit", "-q", "-am", "the user's beat entry")
    result = remove_demo(copy)
    assert result.returncode == 0, result.stderr
    assert mine in settings.read_text()


# The checksums stand for the project's name with a placeholder: a renamed fork removes too. After
# make rename NAME=alice, "alice" in the README's tour is the project's name or the tour's
# customer: each checksum is tried both ways. (A name that is a word of the code is refused by
# make rename: tests/test_rename.py.)
@pytest.mark.parametrize("name", ["acme-store", "alice"])
def test_after_make_rename_every_block_is_still_the_shipped_one(tmp_path: Path, name: str) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    renamed = sh("make", "rename", f"NAME={name}", cwd=copy)
    assert renamed.returncode == 0, renamed.stdout + renamed.stderr
    git(copy, "commit", "-q", "-am", "renamed")
    result = remove_demo(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (copy / "app/shop").exists()


def test_an_edited_block_and_a_file_it_would_lose_are_named_together(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    settings = copy / "app/config/settings.py"
    settings.write_text(
        settings.read_text().replace("REPORT_MAX_DAYS", "MY_SETTING = 1\nREPORT_MAX_DAYS", 1)
    )
    git(copy, "commit", "-q", "-am", "the user's setting")
    (copy / "app/reports/mine.py").write_text("MINE = 1\n")
    message = refused(copy)
    assert "app/reports/mine.py: not tracked by git" in message
    assert "app/config/settings.py:" in message
    assert "this block differs" in message


def test_an_ignored_file_in_a_path_it_deletes_is_refused_even_with_force(tmp_path: Path) -> None:
    # .gitignore has .env: git ls-files --exclude-standard would not list it, yet it is the user's.
    copy = copy_of_the_repository(tmp_path / "repo")
    (copy / "upstream/.env").write_text("SECRET=mine\n")
    # The caches the project's tools write hold nothing of the user's: never named.
    (copy / "app/shop/__pycache__").mkdir()
    (copy / "app/shop/__pycache__/models.cpython-313.pyc").write_bytes(b"\0")
    for force in ((), ("FORCE=1",)):
        message = refused(copy, *force)
        assert "upstream/.env: not tracked by git" in message
        assert "__pycache__" not in message


def test_an_uncommitted_line_inside_a_fenced_block_is_refused_even_with_force(
    tmp_path: Path,
) -> None:
    # FORCE=1 covers a dirty tree and committed edits in blocks, never work that is nowhere else.
    copy = copy_of_the_repository(tmp_path / "repo")
    settings = copy / "app/config/settings.py"
    mine = "BLOG_PAGE_SIZE = 20\n"
    lines = settings.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("REPORT_RETENTION_DAYS"))
    lines.insert(number, mine)
    settings.write_text("".join(lines))
    message = refused(copy, "FORCE=1")
    assert "app/config/settings.py:" in message
    assert "not committed" in message
    assert "commit it first" in message
    assert mine in settings.read_text()


def test_a_module_of_the_user_s_that_uses_the_demo_is_refused_and_kept(tmp_path: Path) -> None:
    # Only the test modules the project shipped as the demo's go whole: one line of the user's
    # importing the demo never takes a kept module (and all its other tests) with it. Code of
    # theirs in app/ that uses it (an import in a function, a lazy model reference) would break
    # at run time with lint still green.
    copy = copy_of_the_repository(tmp_path / "repo")
    added = {
        "app/ops/apis.py": (
            "\n\ndef mine() -> object:\n    from shop.models import Product\n\n    return Product\n"
            '\n\nMINE = "shop.Product"\n'
            'DEPENDS = [("reports", "0001_initial")]\n'
            "import json; import shop.models  # noqa: E401, E702\n"
        ),
        "tests/app/conftest.py": (
            "\n\n@pytest.fixture\ndef a_product():  # type: ignore[no-untyped-def]\n"
            "    from shop.models import Product\n\n    return Product.objects.first()\n"
        ),
        "tests/app/notifications/test_outbox.py": (
            "\n\ndef test_mine():  # type: ignore[no-untyped-def]\n"
            "    from reports.models import Report\n\n    assert Report\n"
        ),
    }
    numbers = {}
    for path, text in added.items():
        file = copy / path
        before = file.read_text()
        numbers[path] = (
            before.count("\n")
            + text.split("\n").index(next(line for line in text.split("\n") if "from " in line))
            + 1
        )
        file.write_text(before + text)
    git(copy, "commit", "-q", "-am", "the user's tests")
    # A new test module, not committed yet.
    (copy / "tests/app/blog").mkdir()
    (copy / "tests/app/blog/test_blog.py").write_text("from shop.models import Product\n")
    for force in ((), ("FORCE=1",)):
        message = refused(copy, *force)
        for path, number in numbers.items():
            assert f"{path}:{number}: from " in message, (path, message)
        for use in ('MINE = "shop.Product"', 'DEPENDS = [("reports"', "import shop.models"):
            assert use in message, (use, message)
        assert "tests/app/blog/test_blog.py:1: from shop.models import Product (not committed)" in (
            message
        )
    for path in added:
        assert (copy / path).is_file()


def test_the_target_runs_the_script_with_the_venv_s_python() -> None:
    # Not the shebang's python3 (the first on PATH may lack tomllib), and after make venv: the
    # removal's clean-up needs its ruff.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"(?m)^remove-demo: venv ##", makefile)
    assert re.search(r"(?m)^\t@\$\(PYTHON\) bin/remove-demo ", makefile)


def test_a_copied_overlay_and_a_linked_path_lose_the_demo_too(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    # A staging overlay copied from production: its blocks are the shipped ones, its demo
    # patches go as production's do.
    shutil.copytree(copy / "k8s/overlays/production", copy / "k8s/overlays/staging")
    # A path it deletes, kept by the fork as a link to a folder of its own: the link goes, the
    # folder stays (rmtree would refuse the link after other paths were already gone).
    shutil.move(copy / "upstream", copy / "vendor-upstream")
    (copy / "upstream").symlink_to("vendor-upstream")
    # A link of the fork's into what goes would dangle: it goes with it.
    (copy / "app/catalog").symlink_to("shop")
    # An overlay made of links to production's files: its links to the demo's patches go.
    linked = copy / "k8s/overlays/linked"
    linked.mkdir()
    for file in (copy / "k8s/overlays/production").iterdir():
        (linked / file.name).symlink_to(f"../production/{file.name}")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "staging, and a vendored folder")
    result = remove_demo(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    staging = copy / "k8s/overlays/staging"
    for name in ("reports-resources.yaml", "shop-upstream-egress.yaml"):
        assert not (staging / name).exists(), name
    assert "demo-shop" not in (staging / "kustomization.yaml").read_text()
    assert not (copy / "upstream").is_symlink()
    assert (copy / "vendor-upstream").is_dir()
    assert not (copy / "app/catalog").is_symlink()
    assert not (linked / "reports-resources.yaml").is_symlink()
    assert (linked / "kustomization.yaml").is_symlink()
    shutil.copy(copy / "k8s/secrets.env.example", staging / "secrets.env")
    rendered = sh("kubectl", "kustomize", str(staging), cwd=copy)
    assert rendered.returncode == 0, rendered.stderr


def test_a_file_it_edits_with_uncommitted_lines_is_refused_even_with_force(tmp_path: Path) -> None:
    # Its edits and ruff's fixes after them would take the user's unused import with them.
    copy = copy_of_the_repository(tmp_path / "repo")
    api = copy / "app/config/api.py"
    api.write_text("from blog.apis import router as blog_router  # noqa: F401\n" + api.read_text())
    message = refused(copy, "FORCE=1")
    assert "app/config/api.py: uncommitted changes" in message


def test_a_name_holding_the_demo_s_marker_is_refused(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    result = sh("make", "rename", "NAME=demo-shops", cwd=copy)
    assert result.returncode != 0
    assert "holds the demo's marker" in result.stderr
    assert git(copy, "status", "--porcelain") == ""
