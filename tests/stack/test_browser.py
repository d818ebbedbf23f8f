"""Pages people open in a browser, rendered by headless Chromium (Debian's package; .ci/browser.sh
installs it) under the Content-Security-Policy Nginx sends: the page must show its content and
the browser must have blocked nothing. A policy that blocks a page's scripts leaves it blank
without any HTTP error, so only a browser can tell."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# The one bin/check-prereqs found on PATH; Debian's when PATH has none.
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
# What Chromium logs to stderr for a console message the policy caused (a blocked script,
# style, image or connection), in either of its phrasings.
CSP_VIOLATION = re.compile(r"Content Security Policy|Refused to", re.IGNORECASE)


def render(url: str, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console lines about the policy."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/browser.sh)")
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            # Console messages (CSP violations among them) go to stderr.
            "--enable-logging=stderr",
            "--v=0",
            # Virtual time: the dump waits for the page's scripts and their requests (Swagger UI
            # fetches the schema, then renders), not a wall-clock guess.
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, [line for line in console if CSP_VIOLATION.search(line)]


def assert_strict_for_scripts(csp: str) -> None:
    """Scripts only from this origin's files: no inline script, no eval, no other host."""
    directives = {}
    for directive in filter(None, (d.strip() for d in csp.split(";"))):
        name, *sources = directive.split()
        directives[name] = sources
    for name in ("script-src", "script-src-elem", "script-src-attr"):
        sources = directives.get(name, directives.get("script-src", directives["default-src"]))
        assert set(sources) <= {"'self'", "'none'"}, csp


def test_the_api_docs_list_every_operation_under_the_policy_nginx_sends(stack, tmp_path):
    response = stack.get("/api/docs")
    assert response.status_code == 200
    assert_strict_for_scripts(response.headers["Content-Security-Policy"])
    paths = stack.get("/api/openapi.json").json()["paths"]
    assert "/api/products" in paths

    dom, violations = render(stack.url("/api/docs"), tmp_path / "profile")

    assert violations == [], "\n".join(violations)
    # Swagger UI renders one block per operation, its path in data-path.
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert rendered == set(paths), dom[-3000:]
    assert 'class="opblock-summary-method">POST<' in dom


def test_the_admin_login_page_renders_under_the_policy_nginx_sends(stack, tmp_path):
    response = stack.get("/admin/login/")
    assert response.status_code == 200
    assert_strict_for_scripts(response.headers["Content-Security-Policy"])

    dom, violations = render(stack.url("/admin/login/"), tmp_path / "profile")

    assert violations == [], "\n".join(violations)
    assert 'id="login-form"' in dom
    assert 'name="username"' in dom
    assert 'name="password"' in dom
