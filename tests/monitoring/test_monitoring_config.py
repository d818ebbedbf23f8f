"""The monitoring image's own tools on the repository's monitoring/ folder: the configs as the
entrypoint renders them (production and test clock) pass `promtool check config`, `promtool
check rules` and `amtool check-config`, and `promtool test rules` proves every alert firing and
not firing (monitoring/tests/alerts_test.yml)."""

import re

import pytest
import yaml

from tests.support import MONITORING_SERVICES, ROOT, docker, image, run

MONITORING = ROOT / "monitoring"


def run_in_image(*args: str, env: dict[str, str] | None = None, entrypoint: str = "") -> str:
    options = [arg for name, value in (env or {}).items() for arg in ("-e", f"{name}={value}")]
    if entrypoint:
        options += ["--entrypoint", entrypoint]
    result = docker(
        "run", "--rm", "-v", f"{MONITORING}:/opt/monitoring:ro", *options,
        image("monitoring"), *args, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {},
        # The stack test's clock, and an SMTP relay that needs a login and TLS.
        {"ALERT_TIME_SCALE": "30", "PROMETHEUS_SCRAPE_INTERVAL": "2s",
         "EMAIL_HOST_USER": "alerts", "EMAIL_HOST_PASSWORD": "s3cret", "EMAIL_USE_TLS": "true"},
    ],
    ids=["production", "test-clock-smtp-login"],
)  # fmt: skip
def test_rendered_configs_and_rules_pass_promtool_and_amtool(env):
    out = run_in_image("check", env=env)
    assert "is valid prometheus config file syntax" in out
    rules = len(alerts())
    assert out.count(f"SUCCESS: {rules} rules found") >= 1
    assert "Checking '/tmp/monitoring/alertmanager.yml'  SUCCESS" in out


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests():
    tests = "/opt/monitoring/tests/alerts_test.yml"
    out = run_in_image("test", "rules", tests, entrypoint="promtool")
    assert "SUCCESS" in out


def alerts() -> dict[str, dict]:
    rules = yaml.safe_load((MONITORING / "rules" / "alerts.yml").read_text())
    return {r["alert"]: r for group in rules["groups"] for r in group["rules"] if "alert" in r}


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    tests = yaml.safe_load((MONITORING / "tests" / "alerts_test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert set(alerts()) - firing == set()
    assert set(alerts()) - quiet == set()


def test_every_alert_says_what_it_catches_and_has_a_severity_the_router_knows():
    text = (MONITORING / "rules" / "alerts.yml").read_text()
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        # The comment right above "- alert: NAME" (the failure and why the threshold).
        assert re.search(rf"#[^\n]+\n\s+- alert: {name}\n", text), f"{name} has no comment"
    routes = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())["route"]["routes"]
    assert {m for r in routes for m in r["matchers"]} == {
        'severity="critical"',
        'severity="warning"',
    }


def compose_services(*profiles: str) -> set[str]:
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    out = run("docker", "compose", *args, "config", "--services", cwd=ROOT).stdout
    return set(out.split())


def test_plain_compose_up_starts_no_monitoring_service():
    assert compose_services() & set(MONITORING_SERVICES) == set()
    assert compose_services("monitoring") >= set(MONITORING_SERVICES)


def test_flower_refuses_a_dev_only_password_in_production():
    env = ["APP_ENV=production", "FLOWER_PASSWORD=dev-only-flower"]
    args = [arg for e in env for arg in ("-e", e)]
    result = docker(
        "run", "--rm", *args, image("flower"), "/opt/celery/entrypoint.sh", "flower", check=False
    )
    assert result.returncode == 1
    assert "FLOWER_PASSWORD" in result.stderr
