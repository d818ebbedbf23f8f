"""What a fork starts from: a licence it may use, and one user model the whole code refers to."""

import re
import subprocess
import sys

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
    sources = [path for top in ("app", "bench", "tests") for path in (ROOT / top).rglob("*.py")]
    offenders = [
        str(path.relative_to(ROOT)) for path in sources if pattern.search(path.read_text())
    ]
    assert offenders == []


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
