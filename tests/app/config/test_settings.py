"""Production refuses unsafe settings; every variable the code reads is documented once."""

import os
import re
import secrets
import subprocess
import sys

import pytest
import yaml

from tests.support import ROOT

SECRETS = ("DJANGO_SECRET_KEY", "DB_PASSWORD", "REDIS_PASSWORD", "REDIS_CACHE_PASSWORD")


def load_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "APP_ENV"}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('loaded')"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=False,
    )


def real_secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(50) for name in SECRETS}


def test_production_starts_with_real_secrets():
    result = load_settings({"APP_ENV": "production", **real_secrets()})
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout


@pytest.mark.parametrize("name", SECRETS)
def test_production_refuses_a_missing_secret(name):
    env = real_secrets()
    del env[name]
    result = load_settings({"APP_ENV": "production", **env})
    assert result.returncode != 0
    assert f"{name} is missing or still has its development value" in result.stderr


@pytest.mark.parametrize("name", SECRETS)
def test_production_refuses_a_development_value(name):
    env = {**real_secrets(), name: "dev-only-anything"}
    result = load_settings({"APP_ENV": "production", **env})
    assert result.returncode != 0
    assert name in result.stderr


@pytest.mark.parametrize(
    ("suffix", "said"),
    [
        ("x y", "DB_CHECK_SUFFIX may hold only letters, digits and _, got 'x y'"),
        # app + _replica is the replica's database: PgBouncer would send its reads elsewhere.
        ("_replica", "DB_CHECK_SUFFIX '_replica' makes app_replica, one of the app's databases"),
        ("_" + "c" * 60, "longer than PgBouncer's 63 characters"),
    ],
)
def test_a_check_suffix_pgbouncer_cannot_take_is_refused(suffix, said):
    result = load_settings({"DB_CHECK_SUFFIX": suffix, "DB_REPLICA_NAMES": "app_replica"})
    assert result.returncode != 0
    assert said in result.stderr


def test_production_refuses_debug():
    result = load_settings({"APP_ENV": "production", "DJANGO_DEBUG": "true", **real_secrets()})
    assert result.returncode != 0
    assert "DJANGO_DEBUG=true is refused with APP_ENV=production" in result.stderr


@pytest.mark.parametrize(
    ("forwarded", "shown"), [(False, True), (True, False)], ids=["web's own port", "via Nginx"]
)
def test_the_debug_toolbar_is_shown_only_on_webs_own_port(monkeypatch, rf, forwarded, shown):
    import config.settings

    monkeypatch.setattr(config.settings, "DEBUG_TOOLBAR", True)
    headers = {"HTTP_X_FORWARDED_FOR": "172.18.0.1"} if forwarded else {}
    assert config.settings.show_debug_toolbar(rf.get("/admin/", **headers)) is shown


def test_local_starts_with_no_environment_at_all():
    result = load_settings({"APP_ENV": "local"})
    assert result.returncode == 0, result.stderr


def documented() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {m.group(1) for line in lines if (m := re.match(r"^([A-Z][A-Z0-9_]*)=", line))}


def read_by_code() -> set[str]:
    """Every variable name the code and the entrypoints read."""
    patterns = [
        r'env_(?:str|int|float|bool|list|secret)\(\s*"([A-Z][A-Z0-9_]*)"',
        r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)"',
        r'_int\(\s*"([A-Z][A-Z0-9_]*)"',
        r"\$\{([A-Z][A-Z0-9_]*)[:}]",
        r"require ([A-Z][A-Z0-9_]*)",
    ]
    files = [
        *ROOT.glob("app/config/*.py"),
        ROOT / "app/gunicorn.conf.py",
        *ROOT.glob("celery/*"),
        *ROOT.glob("*/entrypoint.sh"),
    ]
    names: set[str] = set()
    for path in files:
        text = path.read_text()
        for pattern in patterns:
            names.update(re.findall(pattern, text))
    # Set inside the entrypoints themselves, or by the image.
    return names - {"PGDATA", "RUN_DIR", "PG_MAJOR", "DJANGO_SETTINGS_MODULE", "NAME"}


def test_every_variable_the_code_reads_is_documented():
    missing = read_by_code() - documented()
    assert not missing, f"read by the code but missing from .env.example: {sorted(missing)}"


def test_compose_passes_only_documented_variables():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    passed = {
        name for service in compose["services"].values() for name in service.get("environment", {})
    }
    undocumented = passed - documented()
    assert not undocumented, (
        f"compose sets variables missing from .env.example: {sorted(undocumented)}"
    )


TOOLBAR_PROBE = """
import sys
if sys.argv[1] == "absent":
    sys.modules["debug_toolbar"] = None  # as in the production image: not installed
import django
django.setup()
from django.conf import settings
from django.urls import reverse
import config.urls
try:
    reverse("djdt:render_panel")
    routed = True
except Exception:
    routed = False
apps = "debug_toolbar" in settings.INSTALLED_APPS
middleware = "debug_toolbar.middleware.DebugToolbarMiddleware" in settings.MIDDLEWARE
print(apps, middleware, routed)
"""


@pytest.mark.parametrize(
    ("debug", "package", "expected"),
    [
        ("true", "present", "True True True"),
        ("false", "present", "False False False"),
        ("true", "absent", "False False False"),
    ],
)
def test_the_debug_toolbar_only_with_debug_and_the_package(debug, package, expected):
    """`make dev`'s image has the package and sets DJANGO_DEBUG=true; production has neither."""
    result = subprocess.run(
        [sys.executable, "-c", TOOLBAR_PROBE, package],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": debug},
        cwd=ROOT / "app",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
