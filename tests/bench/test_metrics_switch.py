"""METRICS_ENABLED=false (make bench's observability scenario, bench_settings) records nothing;
the default records (tests/app/core/test_metrics.py), and the product's settings have no such
switch. Each case runs in a fresh interpreter: the switch is applied once, as Django starts."""

import ast
import json
from pathlib import Path

from tests.support import ROOT, django_script

# Counts one request and one cache read, then reports the two counters' values.
SCRIPT = r"""
import json
import django
django.setup()
from core import metrics
metrics.observe_request("GET", "some-view", 200, 0.01)
metrics.count_cache_get(hit=True)
print(json.dumps({
    "requests": metrics.REQUESTS.labels("GET", "some-view", "200")._value.get(),
    "gets": metrics.CACHE_GETS.labels("hit")._value.get(),
}))
"""

# The bench image's settings module, from this checkout.
BENCH = {"PYTHONPATH": str(ROOT / "bench/django"), "DJANGO_SETTINGS_MODULE": "bench_settings"}


def counted(**env: str) -> dict[str, float]:
    # Single-process counters: neither a caller's switch nor its multiprocess directory.
    drop = {"METRICS_ENABLED", "PROMETHEUS_MULTIPROC_DIR"}
    return json.loads(django_script(SCRIPT, env=env, drop=drop.__contains__)[-1])


def test_metrics_are_recorded_by_default():
    assert counted(**BENCH) == {"requests": 1.0, "gets": 1.0}


def test_metrics_enabled_false_records_nothing():
    assert counted(**BENCH, METRICS_ENABLED="false") == {"requests": 0.0, "gets": 0.0}


def test_the_product_records_whatever_metrics_enabled_says():
    assert counted(METRICS_ENABLED="false") == {"requests": 1.0, "gets": 1.0}


def test_every_caller_reaches_the_recorders_that_the_switch_replaces_through_their_module():
    """The switch replaces the recorders in their modules (bench_endpoints.apps.metrics_off): a
    caller holding its own reference (`from core.metrics import observe_cache`) went on
    recording in the observability scenario's "off" state."""
    replaced = {
        "core.metrics": {"observe_request", "observe_cache", "count_cache_get"},
        "runtime.metrics": {"refresh_worker_memory", "observe_request_threads"},
    }
    held = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = imported_module(path, node)
            if module in replaced:
                names = {alias.name for alias in node.names} & (replaced[module] | {"*"})
                held += [f"{path.relative_to(ROOT)}: {name}" for name in sorted(names)]
    assert held == []


def imported_module(path: Path, node: ast.ImportFrom) -> str:
    """The dotted module a `from ... import` names, a relative one (`from .metrics import x`
    in app/core/) resolved against the file's package."""
    if not node.level:
        return node.module or ""
    package = path.relative_to(ROOT / "app").parent.parts
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def test_a_relative_import_resolves_to_the_module_it_names():
    def module(source: str, where: str) -> str:
        (node,) = ast.parse(source).body
        assert isinstance(node, ast.ImportFrom)
        return imported_module(ROOT / "app" / where, node)

    assert module("from .metrics import observe_cache", "core/cache.py") == "core.metrics"
    assert module("from ..metrics import count_cache_get", "core/sub/x.py") == "core.metrics"
    assert module("from . import metrics", "core/__init__.py") == "core"
    assert module("from core.metrics import observe_request", "shop/cache.py") == "core.metrics"
