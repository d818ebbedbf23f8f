"""What a fork starts from: a licence it may use, and one user model the whole code refers to."""

import re

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
