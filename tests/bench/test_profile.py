"""`make profile` (bench/profile.py): PROFILE_ONLY runs only the group it names and refuses any
other name before anything starts; each observability state reaches web as the environment
bench/scenarios/observability.py says it is, and web then records and traces as that state
claims. No stack: compose only renders its configuration, Django runs in a fresh interpreter."""

import json
import os
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from bench.scenarios.observability import OBSERVABILITY, SINK

from bench import profile, stack, web
from tests.support import ROOT, django_script, run

HANDLERS = [
    "fan-out, default handler",
    "fan-out, framework-free (raw ASGI)",
    "fan-out, pooled with thread hops",
    "fan-out, stock Django handler",
    "cached list, default handler",
]
STATES = ["off", "metrics", "tracing", "dropped", "all"]
# The cached list's states up to a request the sampler drops: its tracing goal binds there.
LIST_STATES = ["off", "metrics", "dropped"]
PAGES = [f"product page, {state}" for state in STATES] + [
    f"cached list, {state}" for state in LIST_STATES
]


def names(targets: list[profile.Target]) -> list[str]:
    return [name for _, name, *_ in targets]


def test_profile_only_selects_only_the_named_group():
    assert names(profile.selected_targets("handlers")) == HANDLERS
    observability = profile.selected_targets("observability")
    assert names(observability) == PAGES
    # Each state's own environment, off first on each path (the others are compared with it).
    assert [env for *_, env in observability] == [
        OBSERVABILITY[state] for state in STATES + LIST_STATES
    ]
    assert [path for *_, path, _, _ in observability] == [profile.PRODUCT] * len(STATES) + [
        profile.LIST
    ] * len(LIST_STATES)
    assert names(profile.selected_targets("")) == HANDLERS + PAGES
    # The orders are no target: main() profiles them itself.
    assert profile.selected_targets("orders") == []


@pytest.mark.parametrize("only", ["observabilty", "off", "handlers,observability", " "])
def test_an_unknown_profile_only_is_refused(only):
    with pytest.raises(SystemExit) as refused:
        profile.selected_targets(only)
    assert str(refused.value) == (
        f"PROFILE_ONLY={only!r} is not a group of targets: one of handlers, observability, "
        "orders, or empty for all of them"
    )


def test_make_profile_refuses_an_unknown_name_before_building_or_starting_anything():
    # bench/profile.py as `make profile` runs it, with whatever would build, install or start
    # something replaced by a failure: the refusal must come first.
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench import stack, profile\n"
        "def started(*args, **kwargs):\n"
        "    raise RuntimeError(f'started: {args}')\n"
        "stack.compose = profile.py_spy = started\n"
        "sys.exit(profile.main())\n"
    )
    env = {**os.environ, "PROFILE_ONLY": "handler"}
    result = run(sys.executable, "-c", script, check=False, timeout=60, cwd=ROOT, env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "PROFILE_ONLY='handler' is not a group of targets: one of handlers, observability, "
        "orders, or empty for all of them"
    )


def fake_summary(path: str, c: int) -> dict[str, Any]:
    summary = profile.summarise(
        "main (/usr/lib/python3.13/asyncio/events.py);view (/app/shop/api.py) 30\n"
        "main (/usr/lib/python3.13/asyncio/events.py);get (site-packages/django/x.py) 70\n"
    )
    return {**summary, "load": {"ok_rps": 100.0}, "path": path, "c": c}


ORDERS_HEADING = "## Placing an order: where web's and the email worker's CPU goes"


def fake_orders(spy: str) -> dict[str, Any]:
    """100 orders/s over a 20 s window: 2,000 orders. web: 2,000 samples at 200/s = 10 s of
    Python CPU, 5 ms an order; the worker half of that."""
    web = profile.summarise(
        "main (/app/x.py);_order_place (/app/shop/services.py:1);execute (psycopg/c.py) 1500\n"
        "main (/app/x.py);authenticate (/app/accounts/auth.py:1);get (django/x.py) 500\n",
        profile.ORDER_THROUGH,
    )
    worker = profile.summarise(
        "main (celery/x.py);outbox_email_deliver (/app/notifications/services.py:1);"
        "sendmail (/usr/lib/python3.13/smtplib.py:1) 1000\n",
        profile.ORDER_THROUGH,
    )
    return {
        "load": {"ok_rps": 100.0, "p50_s": 0.12},
        "window_s": 20.0,
        "services": {"web": {**web, "cpu_s": 14.0}, "worker-email": {**worker, "cpu_s": 6.0}},
    }


def test_the_orders_section_gives_each_services_cpu_per_order_and_its_steps(monkeypatch):
    monkeypatch.setattr(
        stack, "host_info", lambda: {"cores": 2, "memory_gib": 4, "cpu": "test cpu"}
    )
    lines = profile.markdown([], fake_orders("py-spy")).splitlines()
    assert ORDERS_HEADING in lines
    assert (
        "| **GIL held ms (Python's CPU, and its waits for a core)** | **5.00** | **2.50** |"
        in lines
    )
    assert "| container CPU ms (cgroup) | 7.00 | 3.00 |" in lines
    assert "| authentication (the bearer token's row) | 1.25 | 0.00 |" in lines
    assert "| placing the order (its transaction) | 3.75 | 0.00 |" in lines
    assert "| the email relay task (claim, send, mark sent) | 0.00 | 2.50 |" in lines
    assert "| SMTP (smtplib, building the message) | 0.00 | 2.50 |" in lines
    assert "| psycopg (sending, waiting, reading) | 3.75 | 0.00 |" in lines
    # No target was profiled: no table of theirs.
    assert not [line for line in lines if line.startswith("| package | default")]


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("handlers", HANDLERS),
        ("observability", PAGES),
        ("orders", []),
        ("", HANDLERS + PAGES),
    ],
)
def test_profile_md_holds_only_the_selected_columns(only, expected, monkeypatch, tmp_path):
    composed: list[tuple[str, ...]] = []
    profiled: list[tuple[str, dict[str, str]]] = []

    def compose(*args: str, **kwargs: Any) -> SimpleNamespace:
        composed.append(args)
        return SimpleNamespace(stdout="", returncode=0)

    def sampled(
        name: str, app: str, path: str, c: int, env: dict[str, str], spy: str
    ) -> dict[str, Any]:
        profiled.append((name, env))
        return fake_summary(path, c)

    monkeypatch.setattr(profile, "ONLY", only)
    monkeypatch.setattr(profile, "py_spy", lambda: "py-spy")
    monkeypatch.setattr(profile, "profile", sampled)
    monkeypatch.setattr(profile, "profile_orders", fake_orders)
    monkeypatch.setattr(profile, "OUT", tmp_path / "profile.md")
    monkeypatch.setattr(stack, "OUT", tmp_path)
    monkeypatch.setattr(stack, "compose", compose)
    monkeypatch.setattr(
        stack, "host_info", lambda: {"cores": 2, "memory_gib": 4, "cpu": "test cpu"}
    )
    assert profile.main() == 0
    assert [name for name, _ in profiled] == expected
    lines = (tmp_path / "profile.md").read_text().splitlines()
    assert (ORDERS_HEADING in lines) is (only in ("", "orders"))
    if not expected:
        return
    header = next(line for line in lines if line.startswith("| package |"))
    assert header == "| package | " + " | ".join(expected) + " |"
    tops = [line.removeprefix("## Top functions: ") for line in lines if line.startswith("## Top")]
    assert tops == expected
    # The tracing states export to the sink: it is started only when they are profiled.
    (up,) = [args for args in composed if args[0] == "up"]
    assert ("otlp-sink" in up) is (only != "handlers")
    # One comparison per path, each with its own off; the handlers' cached list is in neither.
    observed = [line for line in lines if line.startswith("## Observability")]
    assert observed == (
        []
        if only == "handlers"
        else [
            '## Observability: what each state adds to "product page, off"',
            '## Observability: what each state adds to "cached list, off"',
        ]
    )
    if only != "handlers":
        cached = lines.index(observed[1])
        columns = next(line for line in lines[cached:] if line.startswith("| package |"))
        assert columns == "| package | cached list, metrics | cached list, dropped |"


def render_web(env: dict[str, str]) -> dict[str, Any]:
    """The bench's compose files rendered in this environment (what the harness runs compose
    with): every service, the sink's profile included. Nothing is started."""
    compose = ["docker", "compose", *stack.COMPOSE_FILES, "--profile", "*"]
    result = run(*compose, "config", "--format", "json", timeout=60, cwd=ROOT, env=env)
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


# Loads what web serves under make profile (web.BENCH_ASGI, bench_settings), records one
# request, and says what it records and traces.
SCRIPT = r"""
import json, sys
import django
django.setup()
import bench_endpoints.asgi
from django.conf import settings
from core import metrics
metrics.observe_request("GET", "some-view", 200, 0.01)
sampler = None
if "opentelemetry.sdk.trace" in sys.modules:
    from opentelemetry import trace
    sampler = trace.get_tracer_provider().sampler.get_description()
print(json.dumps({
    "recorded": metrics.REQUESTS.labels("GET", "some-view", "200")._value.get(),
    "traced": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace",
                                                             "opentelemetry.instrumentation"))),
    "sampler": sampler,
    "endpoint": settings.OTEL_EXPORTER_OTLP_ENDPOINT,
}))
"""
BENCH = {"PYTHONPATH": str(ROOT / "bench/django"), "DJANGO_SETTINGS_MODULE": "bench_settings"}
# What the states set, and what this process must not take from the caller's environment.
VARIABLES = sorted({name for env in OBSERVABILITY.values() for name in env})


def not_ours(name: str) -> bool:
    return name.startswith("OTEL_") or name in {"METRICS_ENABLED", "PROMETHEUS_MULTIPROC_DIR"}


def web_process(env: dict[str, str]) -> dict[str, Any]:
    lines = django_script(SCRIPT, env={**BENCH, **env}, drop=not_ours)
    (line,) = [line for line in lines if line.startswith('{"recorded"')]
    seen: dict[str, Any] = json.loads(line)
    return seen


@pytest.fixture(scope="module")
def default_sampler() -> str:
    """The sampler the product builds with tracing on and its sampler variables unset."""
    seen = web_process({"OTEL_EXPORTER_OTLP_ENDPOINT": SINK, "OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
    sampler: str = seen["sampler"]
    return sampler


class Recreated(Exception):
    pass


def recreated_web(target: profile.Target, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The configuration profile() recreates web with for this target (it stops there)."""
    _, name, app, path, c, env = target
    seen: list[dict[str, Any]] = []

    def switch_web(config: dict[str, Any], **kwargs: Any) -> float:
        seen.append(config)
        raise Recreated

    monkeypatch.setattr(web, "switch_web", switch_web)
    monkeypatch.setattr(stack, "log", lambda message: None)
    with pytest.raises(Recreated):
        profile.profile(name, app, path, c, env, "py-spy")
    (config,) = seen
    return config


@pytest.mark.parametrize("state", STATES)
def test_each_observability_state_reaches_web_as_it_claims(state, default_sampler, monkeypatch):
    (target,) = [t for t in profile.TARGETS if t[1] == f"product page, {state}"]
    env = target[-1]
    assert env == OBSERVABILITY[state]
    config = recreated_web(target, monkeypatch)
    assert config["command"] == f"{web.GUNICORN} {web.BENCH_ASGI}"
    # As web.switch_web hands it to compose.
    services = render_web(stack.compose_env(web.web_env(config)))
    environment = services["web"]["environment"]
    assert {k: environment[k] for k in env} == env
    seen = web_process(
        {k: environment[k] for k in VARIABLES if k in environment}
        # Nothing listens where spans go here: the exit's flush gives up at once.
        | {"OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    )
    # off: no Prometheus recording, tracing not even imported.
    assert seen["recorded"] == (0.0 if state == "off" else 1.0)
    if state in ("off", "metrics"):
        assert seen["traced"] == []
        assert seen["sampler"] is None
        return
    # tracing, dropped and all: spans exported over OTLP/HTTP to otlp-sink, a service of the bench's
    # compose files on web's network.
    assert seen["traced"]
    assert seen["endpoint"] == SINK == "http://otlp-sink:4318"
    assert set(services["otlp-sink"]["networks"]) & set(services["web"]["networks"])
    if state == "tracing":
        # The default sampler: a tenth of new traces kept, at most 5 a second, a client's
        # traceparent decides.
        assert seen["sampler"] == default_sampler
        assert default_sampler.startswith("ParentBased{root:Capped{TraceIdRatioBased{0.1}, 5/s}")
    elif state == "dropped":
        # Tracing on, no new trace kept: what tracing costs the requests it drops.
        assert seen["sampler"].startswith("ParentBased{root:Capped{TraceIdRatioBased{0.0}")
    else:
        # Every request traced.
        assert seen["sampler"].startswith("ParentBased{root:AlwaysOnSampler")


def cpu_summary(samples: dict[str, int], rps: float, **web: float) -> dict[str, Any]:
    collapsed = "".join(
        f"main (/usr/lib/python3.13/asyncio/events.py);f (site-packages/{path}/x.py) {count}\n"
        for path, count in samples.items()
    )
    summary = profile.summarise(collapsed)
    return {**summary, "load": {"ok_rps": rps}, "path": "/", "c": 100, **web}


# Samples for 1 ms of Python CPU a request, at 100 req/s for SECONDS at RATE a second.
PER_MS = profile.RATE * profile.SECONDS * 100 / 1000


@pytest.mark.parametrize(
    ("raw_ms", "verdict"),
    [
        (0.7, "0.70 ms, so the goal is within what removing Django's share could give"),
        (1.7, "1.70 ms, above the goal with no framework at all"),
    ],
)
def test_the_fanouts_cpu_goal_is_held_against_the_same_calls_with_no_framework(raw_ms, verdict):
    default = cpu_summary({"django": int(PER_MS), "aiohttp": int(PER_MS)}, 100.0)
    raw = cpu_summary({"aiohttp": round(raw_ms * PER_MS)}, 100.0)
    lines = profile.cpu_goal_markdown(
        {profile.DEFAULT_FANOUT: default, profile.RAW_FANOUT_NAME: raw}
    )
    text = " ".join(lines)
    assert "goal ≤ 1.5 ms; the default handler at most 2.00 ms, **behind**" in text
    assert verdict in text
    assert profile.cpu_goal_markdown({profile.DEFAULT_FANOUT: default}) == []


@pytest.mark.parametrize(
    ("web_cpu_s", "bound"),
    [
        # 2,000 requests in the 20 s window: 2.4 s of web's CPU is 1.2 ms a request.
        (2.4, "at most 1.20 ms, met (the GIL held 2.00 ms a request, all of web's CPU 1.20 ms"),
        (5.0, "at most 2.00 ms, **behind** (the GIL held 2.00 ms a request, all of web's CPU 2.50"),
    ],
)
def test_the_cpu_goal_takes_the_smaller_bound_of_the_gil_held_and_webs_whole_cpu(web_cpu_s, bound):
    # A thread holding the GIL is sampled while it waits for a core: web's cgroup may have
    # spent less CPU in all than that, and Python's CPU is part of web's.
    default = cpu_summary(
        {"django": int(PER_MS), "aiohttp": int(PER_MS)}, 100.0, web_cpu_s=web_cpu_s, window_s=20.0
    )
    raw = cpu_summary({"aiohttp": int(PER_MS)}, 100.0)
    text = " ".join(
        profile.cpu_goal_markdown({profile.DEFAULT_FANOUT: default, profile.RAW_FANOUT_NAME: raw})
    )
    assert bound in text


def test_when_the_orders_fail_the_targets_profiles_are_kept_and_the_failure_told(
    monkeypatch, tmp_path
):
    def failed(spy: str) -> dict[str, Any]:
        raise RuntimeError("the customers' orders did not run")

    monkeypatch.setattr(profile, "ONLY", "")
    monkeypatch.setattr(profile, "py_spy", lambda: "py-spy")
    monkeypatch.setattr(
        profile, "profile", lambda name, app, path, c, env, spy: fake_summary(path, c)
    )
    monkeypatch.setattr(profile, "profile_orders", failed)
    monkeypatch.setattr(profile, "OUT", tmp_path / "profile.md")
    monkeypatch.setattr(stack, "OUT", tmp_path)
    monkeypatch.setattr(stack, "compose", lambda *a, **k: SimpleNamespace(stdout="", returncode=0))
    monkeypatch.setattr(
        stack, "host_info", lambda: {"cores": 2, "memory_gib": 4, "cpu": "test cpu"}
    )
    with pytest.raises(RuntimeError, match="did not run"):
        profile.main()
    lines = (tmp_path / "profile.md").read_text().splitlines()
    assert "| package | " + " | ".join(HANDLERS + PAGES) + " |" in lines
    assert ORDERS_HEADING not in lines
