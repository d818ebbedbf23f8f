"""Comments that stay true: a file or test a comment names exists, and no comment in app/ quotes
a measurement. A comment keeps the rule and its reason; the numbers live where a run regenerates
them (docs/BENCHMARKS.md, docs/RELIABILITY.md, docs/SOAK.md) or, measured once, in the prose
that says so (docs/ARCHITECTURE.md, k8s/README.md)."""

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

# What ships or configures what ships (bench/ and docs/ may describe measurements).
AUDITED_DIRS = (
    "app", "nginx", "postgres", "pgbouncer", "redis", "monitoring", "k8s", "celery", "upstream",
    "mailcatcher", "base", ".ci", "bin",
)  # fmt: skip
AUDITED_FILES = ("Dockerfile", "Makefile", ".env.example", ".dockerignore")
# Not the repository's own files: tools' caches, the virtualenv, collectstatic's output.
NOT_OURS = {
    ".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", "staticfiles",
}  # fmt: skip
TEXT_SUFFIXES = {
    ".py", ".html", ".txt", ".conf", ".yml", ".yaml", ".sh", ".ini", ".template", ".env",
    ".example", ".mtail", ".toml", ".json", "",
}  # fmt: skip


def audited_files() -> list[Path]:
    found = [ROOT / name for name in AUDITED_FILES]
    found += sorted(ROOT.glob("docker-compose*.yml"))
    for top in AUDITED_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            skipped = bool(NOT_OURS & set(path.parts))
            if path.is_file() and not skipped and path.suffix in TEXT_SUFFIXES:
                found.append(path)
    return found


def _python_comments(text: str) -> Iterator[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    for token in tokens:
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring is not None:
                line = node.body[0].lineno
                for offset, part in enumerate(docstring.splitlines()):
                    yield line + offset, part


# A template's comments: {# ... #}, {% comment %} ... {% endcomment %} and <!-- ... -->.
TEMPLATE_COMMENT = re.compile(
    r"\{#(.*?)#\}|\{%\s*comment\s*%\}(.*?)\{%\s*endcomment\s*%\}|<!--(.*?)-->", re.DOTALL
)
# A `#` comment of a shell script, Makefile, Dockerfile, YAML or config file: a `#` at the start
# of a line or after a blank (so not ${#var}, a URL's fragment or a colour).
HASH_COMMENT = re.compile(r"(?:^|\s)#(.*)$")


def comments(path: Path, text: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, text) of each comment, and of each docstring's lines in Python."""
    if text is None:
        text = path.read_text()
    if path.suffix == ".py" or text.startswith("#!/usr/bin/env python"):
        yield from _python_comments(text)
    elif path.suffix == ".html":
        for match in TEMPLATE_COMMENT.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            body = next(group for group in match.groups() if group is not None)
            for offset, part in enumerate(body.splitlines()):
                yield line + offset, part
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            match = HASH_COMMENT.search(line)
            if match:
                yield number, match.group(1)


# A repository path a comment names: slash-separated words ending in a known extension, maybe
# with pytest's ::test_name. Not a path that starts with / (inside a container, or a URL's).
EXTENSIONS = "py|yml|yaml|conf|sh|md|toml|json|ini|template|html|lock|mtail"
PATH_REFERENCE = re.compile(
    r"(?<![\w/.$:{-])"
    rf"((?:[\w.-]+/)*[\w-][\w.-]*\.(?:{EXTENSIONS}))"
    r"((?:::\w+)*)"
    r"(?![\w/-])"
)


def _definitions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _basenames(root: Path) -> set[str]:
    names = set()
    for _, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if name not in NOT_OURS]
        names.update(files)
    return names


# Where a run writes its outputs (.gitignore): a comment may name a file there that no checkout has.
OUTPUT_DIRS = ("build/",)


def reference_resolves(
    reference: str, tests: str, source: Path, basenames: set[str], root: Path = ROOT
) -> bool:
    """A path resolves from the repository root, from app/ (code names its modules that way), or
    from the naming file's directory or top directory; a bare file name, anywhere in the tree,
    or as the X.template an entrypoint renders X from. Each ::name after a Python file must be a
    function or class defined in it."""
    if reference.startswith(OUTPUT_DIRS):
        return True
    top = root / source.relative_to(root).parts[0]
    bases = (root, root / "app", source.parent, top)
    if "/" not in reference and not tests:
        return bool({reference, f"{reference}.template"} & basenames) or any(
            (base / reference).is_file() for base in bases
        )
    found = next((base / reference for base in bases if (base / reference).is_file()), None)
    if found is None:
        return False
    names = [name for name in tests.split("::") if name]
    return not names or (found.suffix == ".py" and set(names) <= _definitions(found))


def references(paths: list[Path]) -> Iterator[tuple[Path, int, str, str]]:
    """(file, line, path, ::names) of each repository path a comment names."""
    for path in paths:
        for line, text in comments(path):
            for match in PATH_REFERENCE.finditer(text):
                yield path, line, match.group(1), match.group(2)


def broken_references(paths: list[Path], root: Path = ROOT) -> list[str]:
    basenames = _basenames(root)
    return [
        f"{path.relative_to(root)}:{line} names {reference}{tests}"
        for path, line, reference, tests in references(paths)
        if not reference_resolves(reference, tests, path, basenames, root)
    ]


# A measurement quoted in a comment: a throughput, "measured", a share "N% of" something, a
# speed-up, "N of M runs/requests", an approximate figure ("~7 s", "~200"). Each is a number a
# run observed, not a configured value: those are stated plainly ("pool 20 = ...").
MEASUREMENT = re.compile(
    r"\breq(?:uests)?/s\b|\brps\b|\bmeasure[ds]\b|\d\s*% of\b|\b\d+(?:\.\d+)?x (?:faster|slower)\b"
    r"|\b\d+ (?:of|in|out of) (?:\d+|a (?:hundred|thousand)) (?:runs|requests|tries|attempts)\b"
    r"|~\s?\d"
)


def quoted_measurements(paths: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in paths:
        for line, text in comments(path):
            match = MEASUREMENT.search(text)
            if match:
                found.append(f"{path.relative_to(root)}:{line} quotes {match.group(0)!r}")
    return found


def test_every_file_or_test_a_comment_names_exists() -> None:
    paths = audited_files()
    assert len(list(references(paths))) > 100  # the extraction still finds the comments' paths
    assert broken_references(paths) == []


def test_no_comment_in_the_app_quotes_a_measurement() -> None:
    app = [path for path in audited_files() if path.is_relative_to(ROOT / "app")]
    assert quoted_measurements(app) == []


def _tree(root: Path, files: dict[str, str]) -> list[Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return [root / name for name in files]


EXISTING = {
    "app/core/db.py": "def read() -> None: ...\n",
    "tests/stack/test_faults.py": "def test_hang() -> None: ...\n",
    "pgbouncer/pgbouncer.ini.template": "[databases]\n",
}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("app/core/a.py", "x = 1  # a comment naming app/core/gone.py\n"),
        ("app/core/a.py", '"""A docstring naming core/gone.py."""\n'),
        ("app/core/a.py", 'def f() -> None:\n    """tests/stack/test_faults.py::test_gone"""\n'),
        ("app/core/a.py", "# test_gunicorn_diagnostics.py counts none\n"),
        ("app/templates/a.html", "{# rendered by app/config/gone.py #}<p></p>\n"),
        ("nginx/nginx.conf", "    # is on (app/config/tracing.py)\n    gzip on;\n"),
        ("Makefile", "all: ## runs bin/gone.sh\n"),
    ],
)  # fmt: skip
def test_a_comment_naming_a_file_or_test_that_is_gone_is_caught(
    tmp_path: Path, name: str, text: str
) -> None:
    paths = _tree(tmp_path, {**EXISTING, name: text})
    assert len(broken_references(paths, tmp_path)) == 1


def test_a_comment_naming_what_exists_passes(tmp_path: Path) -> None:
    text = (
        '"""Reads through app/core/db.py and core/db.py (tests/stack/test_faults.py::test_hang),\n'
        'renders pgbouncer.ini; writes build/reliability.json and /tmp/nginx/tls.conf."""\n'
        "x = 'app/gone.py'  # a string, not a comment\n"
    )
    paths = _tree(tmp_path, {**EXISTING, "app/core/a.py": text})
    assert broken_references(paths, tmp_path) == []


@pytest.mark.parametrize(
    "comment",
    [
        "# 1,000 recycled it every ~7 s, which cost 20% of the throughput.",
        "# The shared session serves 270 req/s on two cores.",
        "# Redis.__init__ was 5.6% of a web worker's CPU.",
        "# That client got a connection reset (3 of 120 requests).",
        "# measured in make bench scenario 1",
        "# aiohttp is 2.7x faster than httpx here.",
        "# PgBouncer checks a SCRAM login in ~3 ms.",
    ],
)
def test_a_comment_quoting_a_measurement_is_caught(tmp_path: Path, comment: str) -> None:
    paths = _tree(tmp_path, {"app/a.py": f"x = 1\n{comment}\n"})
    assert len(quoted_measurements(paths, tmp_path)) == 1


def test_a_comment_stating_a_configured_value_passes(tmp_path: Path) -> None:
    text = (
        "# pool 20 = 2 workers x 10 threads; 0.2 leaves readers 80%, so 5s is 5 x 1s.\n"
        "# A worker lives minutes at its peak rate (docs/BENCHMARKS.md, scenario 1).\n"
        "x = '270 req/s'\n"
    )
    paths = _tree(tmp_path, {"app/a.py": text})
    assert quoted_measurements(paths, tmp_path) == []
