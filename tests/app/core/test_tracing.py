"""Tracing is off, and none of it imported, unless OTEL_EXPORTER_OTLP_ENDPOINT is set; on, the
app is wrapped and log lines inside a span carry its trace ID (core/tracing.py).

"None of it": redis-py 8 itself imports the OpenTelemetry API and the SDK's metrics module when
they are installed (its own optional metrics, a no-op until initialised), so off, the app may
load exactly what `import redis` loads and nothing more: no tracer provider, exporter,
instrumentation or propagator. Each case runs in a fresh interpreter: whether a module was
imported is a fact of the process."""

import itertools
import json
import re
import subprocess
import sys

import pytest

from tests.support import django_process, django_script

# Loads everything a web worker and a Celery worker load, serves /healthz through the ASGI app
# (excluded from tracing either way: no span), and logs one line inside a span when tracing is
# on. Prints what it saw as one JSON line.
SCRIPT = r"""
import asyncio, io, json, logging, sys
import django
django.setup()
import config.asgi, config.wsgi, config.celery
from asgiref.testing import ApplicationCommunicator
from django.conf import settings

scope = {"type": "http", "method": "GET", "path": "/healthz", "raw_path": b"/healthz",
         "query_string": b"", "headers": [], "scheme": "http", "server": ("t", 80),
         "client": ("127.0.0.1", 1), "http_version": "1.1", "asgi": {"version": "3.0"}}

async def get():
    app = ApplicationCommunicator(config.asgi.application, scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(5)
    await app.receive_output(5)
    return start["status"]

status = asyncio.run(get())
config.celery.start_tracing()  # what worker_process_init runs in each pool process

from core.logging import JsonFormatter
stream = io.StringIO()
handler = logging.StreamHandler(stream)
handler.setFormatter(JsonFormatter())
log = logging.getLogger("tracing-test")
log.addHandler(handler)
if "opentelemetry" in sys.modules:
    from opentelemetry import trace
    with trace.get_tracer("test").start_as_current_span("unit") as span:
        log.warning("inside")
        ids = (format(span.get_span_context().trace_id, "032x"),
               format(span.get_span_context().span_id, "016x"))
else:
    log.warning("inside")
    ids = None
config.celery.flush_tracing()  # what worker_process_shutdown runs: bounded, never raises
print(json.dumps({
    "status": status,
    "otel_modules": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    "app": type(config.asgi.application.app).__module__,  # inside the lifespan wrapper
    # The sampled requests' way (core.sampled_asgi), when tracing is on.
    "traced": type(getattr(config.asgi.application.app, "traced", None)).__module__,
    # The traced way of the WSGI app, when tracing is on (probes go around it).
    "wsgi": type(getattr(config.wsgi.application, "traced", config.wsgi.application)).__module__,
    "middleware": settings.MIDDLEWARE[0],
    "line": json.loads(stream.getvalue().splitlines()[-1]),
    "ids": ids,
}))
"""


def not_otel(name: str) -> bool:
    return name.startswith(("OTEL_", "TRACES_"))


def run_app(**env: str) -> dict:
    lines = django_script(SCRIPT, env=env, drop=not_otel)
    (report,) = [line for line in lines if line.startswith('{"status"')]
    return json.loads(report)


def modules_redis_imports() -> set[str]:
    script = "import sys, redis; print(' '.join(m for m in sys.modules if 'opentelemetry' in m))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
    "opentelemetry.propagate",
)


def test_unset_endpoint_imports_nothing_of_tracing():
    seen = run_app()
    assert seen["status"] == 200
    assert set(seen["otel_modules"]) <= modules_redis_imports()
    assert not [m for m in seen["otel_modules"] if m.startswith(TRACING_MODULES)]
    assert not seen["app"].startswith(("opentelemetry", "core.sampled_asgi"))
    assert not seen["wsgi"].startswith("opentelemetry")
    assert seen["middleware"] != "core.middleware.RouteSpanMiddleware"
    assert "trace_id" not in seen["line"]


def test_empty_endpoint_is_off_too():
    # Compose passes OTEL_EXPORTER_OTLP_ENDPOINT= (empty) when it is not set.
    seen = run_app(OTEL_EXPORTER_OTLP_ENDPOINT="")
    assert not [m for m in seen["otel_modules"] if m.startswith(TRACING_MODULES)]


def test_set_endpoint_traces_and_logs_the_trace_id():
    # Nothing listens there: the one span is dropped at exit after a second of retries.
    seen = run_app(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    assert seen["status"] == 200
    for prefix in TRACING_MODULES:
        assert [m for m in seen["otel_modules"] if m.startswith(prefix)], prefix
    assert seen["app"] == "core.sampled_asgi"
    assert seen["traced"] == "opentelemetry.instrumentation.asgi"
    assert seen["wsgi"] == "opentelemetry.instrumentation.wsgi"
    assert seen["middleware"] == "core.middleware.RouteSpanMiddleware"
    trace_id, span_id = seen["ids"]
    assert seen["line"]["trace_id"] == trace_id
    assert seen["line"]["span_id"] == span_id


# Serves GET /api/openapi.json (no database) through the traced ASGI and WSGI apps with a
# client's traceparent; the spans go to an in-memory exporter added next to the OTLP one.
REQUEST_SCRIPT = r"""
import asyncio, io, json, sys
import django
django.setup()
import config.asgi, config.wsgi
from asgiref.testing import ApplicationCommunicator
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

memory = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))
traceparent = sys.argv[1]

scope = {"type": "http", "method": "GET", "path": "/api/openapi.json",
         "raw_path": b"/api/openapi.json", "query_string": b"", "scheme": "http",
         "headers": [(b"host", b"localhost"), (b"traceparent", traceparent.encode())],
         "server": ("localhost", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
         "asgi": {"version": "3.0"}}

async def asgi_get():
    app = ApplicationCommunicator(config.asgi.application, scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(10)
    while (await app.receive_output(10)).get("more_body"):
        pass
    return start["status"]

environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/openapi.json", "QUERY_STRING": "",
           "SERVER_NAME": "localhost", "SERVER_PORT": "80", "HTTP_HOST": "localhost",
           "HTTP_TRACEPARENT": traceparent, "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
           "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
           "wsgi.multiprocess": True, "wsgi.run_once": False}
statuses = []
body = config.wsgi.application(environ, lambda status, headers, *a: statuses.append(status))
b"".join(body)
getattr(body, "close", lambda: None)()
print(json.dumps({
    "asgi": asyncio.run(asgi_get()),
    "wsgi": statuses[0],
    "servers": [
        {"name": s.name, "trace_id": format(s.context.trace_id, "032x"),
         "parent": format(s.parent.span_id, "016x") if s.parent else None,
         "scope": s.instrumentation_scope.name, "route": s.attributes.get("http.route")}
        for s in memory.get_finished_spans() if s.kind == trace.SpanKind.SERVER
    ],
}))
"""


def test_a_request_continues_the_clients_trace_in_a_span_named_after_its_route():
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    lines = django_script(
        REQUEST_SCRIPT,
        f"00-{trace_id}-{parent}-01",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            # The ratio alone, so that a trace's ID says whether it is kept.
            "TRACES_MAX_PER_SECOND": "0",
        },
        drop=not_otel,
    )
    (line,) = [line for line in lines if line.startswith('{"asgi"')]
    seen = json.loads(line)
    assert seen["asgi"] == 200
    assert seen["wsgi"].startswith("200")
    servers = sorted(seen["servers"], key=lambda s: s["scope"])
    assert [s["scope"] for s in servers] == [
        "opentelemetry.instrumentation.asgi",
        "opentelemetry.instrumentation.wsgi",
    ]
    for span in servers:
        assert span["name"] == "GET api/openapi.json"
        assert span["route"] == "api/openapi.json"
        assert span["trace_id"] == trace_id
        assert span["parent"] == parent


# Each decision of the sampler the settings build, for a new trace whose ID is just under, and
# just over, a tenth of the ID space (the ratio sampler keeps an ID whose low 64 bits are under
# ratio * 2^64), and under a client's traceparent that is sampled, and one that is not.
SAMPLER_SCRIPT = r"""
import json
import os
import django
django.setup()
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from core import tracing

sampler = tracing.samplers(component=os.environ.get("SAMPLER_COMPONENT", "web"))[1]
tenth = int(0.1 * 2**64)

def kept(trace_id, parent_sampled=None):
    context = None
    if parent_sampled is not None:
        flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
        parent = SpanContext(trace_id, 0x1234, is_remote=True, trace_flags=flags)
        context = set_span_in_context(NonRecordingSpan(parent))
    result = sampler.should_sample(context, trace_id, "GET api/products")
    return result.decision == Decision.RECORD_AND_SAMPLE

print(json.dumps({
    "description": sampler.get_description(),
    "new_under_a_tenth": kept(tenth - 1),
    "new_over_a_tenth": kept(tenth + 1),
    "client_sampled": kept(2**64 - 1, parent_sampled=True),
    "client_not_sampled": kept(1, parent_sampled=False),
    # Then clients' sampled traceparents in a burst, each its own trace, then a new one.
    "clients_burst_kept": sum(kept(2**65 + n, parent_sampled=True) for n in range(50)),
    "new_after_clients_burst": kept(7),
    # Last: new traces in a burst, each one the ratio keeps at 1, then a client's.
    "burst_kept": sum(kept(n + 1) for n in range(50)),
    "client_sampled_after_burst": kept(2**64 - 2, parent_sampled=True),
}))
"""


def sampler_decisions(**env: str) -> dict:
    (line,) = django_script(SAMPLER_SCRIPT, env=env, drop=not_otel)
    return json.loads(line)


def test_by_default_a_tenth_of_new_traces_are_kept_and_a_client_decides_for_its_own():
    seen = sampler_decisions()
    assert seen["description"] == (
        "ParentBased{root:Capped{TraceIdRatioBased{0.1}, 5/s},"
        "remoteParentSampled:Capped{AlwaysOnSampler, 5/s},"
        "remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,"
        "localParentNotSampled:AlwaysOffSampler}"
    )
    assert seen["new_under_a_tenth"] is True
    assert seen["new_over_a_tenth"] is False
    assert seen["client_sampled"] is True
    assert seen["client_not_sampled"] is False


def test_parentbased_always_on_keeps_every_new_trace():
    seen = sampler_decisions(OTEL_TRACES_SAMPLER="parentbased_always_on")
    assert seen["new_over_a_tenth"] is True
    assert seen["client_not_sampled"] is False


def test_the_cap_bounds_what_web_records_clients_apart_and_zero_lifts_it():
    """Five tokens a second for new traces, and in web five more for clients' (a token more
    for either if a fifth of a second passed meanwhile). New traces: the script's first two, a
    new one after the clients' burst, then a burst of 50 keeps the two left. Clients': the
    first sampled one, then a burst of 50 keeps the four left, and one after that is dropped;
    the burst took nothing from the new traces. In a worker (whose parents are web's own,
    already within its cap) every client's is followed. With 0, the ratio alone."""
    web = sampler_decisions(OTEL_TRACES_SAMPLER_ARG="1", TRACES_MAX_PER_SECOND="5")
    assert web["description"].startswith(
        "ParentBased{root:Capped{TraceIdRatioBased{1.0}, 5/s},"
        "remoteParentSampled:Capped{AlwaysOnSampler, 5/s},"
    )
    assert web["clients_burst_kept"] in (4, 5)
    assert web["new_after_clients_burst"] is True
    assert web["burst_kept"] in (2, 3)
    assert web["client_sampled_after_burst"] is False
    worker = sampler_decisions(
        OTEL_TRACES_SAMPLER_ARG="1", TRACES_MAX_PER_SECOND="5", SAMPLER_COMPONENT="worker"
    )
    assert worker["description"].startswith(
        "ParentBased{root:Capped{TraceIdRatioBased{1.0}, 5/s},remoteParentSampled:AlwaysOnSampler,"
    )
    assert worker["clients_burst_kept"] == 50
    assert worker["new_after_clients_burst"] is True
    assert worker["burst_kept"] in (2, 3)
    assert worker["client_sampled_after_burst"] is True
    uncapped = sampler_decisions(OTEL_TRACES_SAMPLER_ARG="1", TRACES_MAX_PER_SECOND="0")
    assert "Capped" not in uncapped["description"]
    assert uncapped["burst_kept"] == 50
    assert uncapped["client_sampled_after_burst"] is True


@pytest.mark.parametrize("root", ["always_off", "always_on"])
def test_under_every_parentbased_sampler_web_caps_what_its_clients_ask_for(root):
    """Its own new traces as the root says (none, or all: as asked), and the clients' sampled
    traceparents within their budget: five tokens, one taken by the script's first sampled
    client (a sixth if a fifth of a second passed meanwhile)."""
    web = sampler_decisions(OTEL_TRACES_SAMPLER=f"parentbased_{root}", TRACES_MAX_PER_SECOND="5")
    assert "remoteParentSampled:Capped{AlwaysOnSampler, 5/s}" in web["description"]
    assert web["burst_kept"] == (50 if root == "always_on" else 0)
    assert web["clients_burst_kept"] in (4, 5)
    worker = sampler_decisions(
        OTEL_TRACES_SAMPLER=f"parentbased_{root}",
        TRACES_MAX_PER_SECOND="5",
        SAMPLER_COMPONENT="worker",
    )
    assert worker["clients_burst_kept"] == 50


def test_a_sampler_asked_for_each_span_is_never_capped():
    seen = sampler_decisions(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="1")
    assert seen["description"] == "TraceIdRatioBased{1.0}"
    assert seen["burst_kept"] == 50


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER must be one of"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER must be one of"),
        (
            {"TRACES_MAX_PER_SECOND": "-1"},
            "TRACES_MAX_PER_SECOND must be a finite number, 0 (no cap) or more",
        ),
        (
            {"TRACES_MAX_PER_SECOND": "inf"},
            "TRACES_MAX_PER_SECOND must be a finite number, 0 (no cap) or more",
        ),
        (
            {"TRACES_MAX_PER_SECOND": "nan"},
            "TRACES_MAX_PER_SECOND must be a finite number, 0 (no cap) or more",
        ),
    ],
    ids=["unknown-sampler", "ratio-over-one", "cap-negative", "cap-infinite", "cap-nan"],
)
def test_a_sampler_setting_outside_its_choices_is_refused_at_start(env, message):
    result = django_process("import django; django.setup()", env=env, drop=not_otel)
    assert result.returncode != 0
    assert message in result.stderr


# The upstream call each request below makes (CALL_UPSTREAM): through the sessions an upstream
# client builds after tracing's setup; it returns how many aiohttp hooks the call's session ran.
# A caller of sampled_first can make its own instead (an app's client, in the sessions it builds).
UPSTREAM_CALL = r"""
async def call_upstream():
    sessions = tracing.UpstreamSessions(aiohttp.TCPConnector())
    try:
        session, headers = sessions.pick()
        async with session.get(upstream_url, headers=headers) as response:
            await response.read()
        return len(session.trace_configs)
    finally:
        await sessions.close()
"""

# A GET of /x through `app` (the wrapped app a script builds) with these headers: its status.
ASGI_GET = r"""
async def get(headers):
    scope = {"type": "http", "method": "GET", "path": "/x", "raw_path": b"/x",
             "query_string": b"", "scheme": "http", "headers": headers,
             "server": ("localhost", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
             "asgi": {"version": "3.0"}}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(5)
    await communicator.receive_output(5)
    return start["status"]
"""

# An ASGI app wrapped as config.asgi wraps Django's, at the default sampler (a tenth of new
# traces): what the app sees inside each request, and the server spans exported.
SAMPLED_FIRST_TEMPLATE = (
    r"""
import asyncio, json, sys
import django
django.setup()
from asgiref.testing import ApplicationCommunicator
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from core import tracing
import aiohttp, http.server, threading

seen = []
upstream_saw = []
upstream_states = []

class Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        upstream_saw.append(self.headers.get("traceparent"))
        upstream_states.append(self.headers.get("tracestate"))
        body = b'{"price": "19.90"}'  # an answer the price service could give
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
threading.Thread(target=server.serve_forever, daemon=True).start()
upstream_url = f"http://127.0.0.1:{server.server_port}"
CALL_UPSTREAM

async def inner(scope, receive, send):
    span = trace.get_current_span()
    with trace.get_tracer("test").start_as_current_span("child") as child:
        child_recording = child.is_recording()
    hooks = await call_upstream()
    seen.append({"trace_id": format(span.get_span_context().trace_id, "032x"),
                 # Read after the upstream call, which sent it (a dropped request's context
                 # is built when first read).
                 "span_id": format(span.get_span_context().span_id, "016x"),
                 "recording": span.is_recording(), "child": child_recording,
                 "instrumented": is_instrumentation_enabled(),
                 "upstream_traceparent": upstream_saw[-1], "upstream_hooks": hooks})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

app = tracing.wrap_asgi(inner)
memory = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))

"""
    + ASGI_GET
    + r"""

traceparent, *tracestate = sys.argv[1:]
statuses = [asyncio.run(get([(b"traceparent", traceparent.encode()),
                             *((b"tracestate", state.encode()) for state in tracestate)]))]
statuses += [asyncio.run(get([])) for _ in range(200)]
print(json.dumps({
    "statuses": sorted(set(statuses)),
    "seen": seen,
    "servers": [format(s.context.trace_id, "032x") for s in memory.get_finished_spans()
                if s.kind == trace.SpanKind.SERVER],
    "upstream_spans": [format(s.context.trace_id, "032x") for s in memory.get_finished_spans()
                       if s.kind == trace.SpanKind.CLIENT and s.name == "GET"],
    "upstream_headers": [list(pair) for pair in zip(upstream_saw, upstream_states)],
}))
"""
)


def traced_script(script: str, *args: str) -> tuple[dict, list[str]]:
    """Runs a script that prints its '{"statuses": ...}' report, with tracing on and spans
    exported nowhere: the report, and every line the script wrote (its log included)."""
    lines = django_script(
        script,
        *args,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            # The ratio alone, so that a trace's ID says whether it is kept.
            "TRACES_MAX_PER_SECOND": "0",
        },
        drop=not_otel,
    )
    (report,) = [line for line in lines if line.startswith('{"statuses"')]
    return json.loads(report), lines


def sampled_first(
    traceparent: str, *, upstream_call: str = UPSTREAM_CALL, tracestate: str | None = None
) -> dict:
    """Runs SAMPLED_FIRST_TEMPLATE: its first request sends this traceparent (and tracestate),
    then 200 send none."""
    script = SAMPLED_FIRST_TEMPLATE.replace("\nCALL_UPSTREAM\n", upstream_call)
    return traced_script(script, traceparent, *([tracestate] if tracestate else []))[0]


def under_a_tenth(trace_id: str) -> bool:
    # What the ratio sampler keeps: the ID's low 64 bits under ratio * 2^64.
    return int(trace_id, 16) & (2**64 - 1) < int(0.1 * 2**64)


def upstream_trace(request: dict) -> tuple[str, bool]:
    """The trace ID and the sampled flag of the traceparent the upstream got in this request."""
    traceparent = request["upstream_traceparent"]
    assert traceparent is not None, f"no traceparent reached the upstream: {request}"
    match = re.fullmatch(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})", traceparent)
    assert match is not None, traceparent
    return match[1], bool(int(match[2], 16) & 1)


def test_an_unsampled_request_runs_without_instrumentation_in_its_trace():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    seen = sampled_first(f"00-{trace_id}-00f067aa0ba902b7-00")  # the client did not sample
    assert seen["statuses"] == [200]
    client = seen["seen"][0]
    # Log lines still carry the client's trace; no span is recorded, no instrumentation runs,
    # and the upstream call goes through a session that runs no aiohttp hook at all.
    upstream = client.pop("upstream_traceparent")
    span_id = client.pop("span_id")
    assert client == {
        "upstream_hooks": 0,
        "trace_id": trace_id,
        "recording": False,
        "child": False,
        "instrumented": False,
    }
    # The upstream call still carries the trace, unsampled, so the upstream drops it too.
    # As the request's own span: the one its log lines name.
    assert upstream == f"00-{trace_id}-{span_id}-00"
    assert int(span_id, 16) != 0
    assert trace_id not in seen["servers"]
    # New traces: each kept one is exported with the very trace ID the sampler kept, recorded
    # and instrumented inside; each dropped one is neither. 200 at a tenth: never none kept.
    new = seen["seen"][1:]
    kept = [s for s in new if s["recording"]]
    assert kept
    assert sorted(s["trace_id"] for s in kept) == sorted(seen["servers"])
    for s in new:
        assert under_a_tenth(s["trace_id"]) is s["recording"] is s["child"] is s["instrumented"]
        # Every upstream call carries its request's trace, with the sampled flag as decided; a
        # kept request's call is a span of its trace, a dropped one's ran no hook.
        assert upstream_trace(s) == (s["trace_id"], s["recording"])
        assert (s["upstream_hooks"] > 0) is s["recording"]
        if not s["recording"]:  # the dropped request's span: the same at each read
            assert s["upstream_traceparent"].split("-")[2] == s["span_id"] != "0" * 16


# Two upstream calls in each request; the first call's caller changes the headers it was given.
TWO_UPSTREAM_CALLS = r"""
async def call_upstream():
    sessions = tracing.UpstreamSessions(aiohttp.TCPConnector())
    try:
        for _ in range(2):
            session, headers = sessions.pick()
            async with session.get(upstream_url, headers=headers) as response:
                await response.read()
            if headers is not None:
                headers["traceparent"] = "changed by its caller"
        return len(session.trace_configs)
    finally:
        await sessions.close()
"""


def test_every_upstream_call_of_a_dropped_request_carries_its_trace_and_the_clients_state():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    seen = sampled_first(
        f"00-{trace_id}-00f067aa0ba902b7-00",
        upstream_call=TWO_UPSTREAM_CALLS,
        tracestate="vendor=abc,other=1",
    )
    client = seen["seen"][0]
    assert client["recording"] is False
    carried = [f"00-{trace_id}-{client['span_id']}-00", "vendor=abc,other=1"]
    # Both calls: the request's own span, unsampled, and the state its client sent, whatever
    # the first call's caller did with the headers it got.
    assert seen["upstream_headers"][:2] == [carried, carried]
    # New traces: no state to carry; a dropped one's calls carry the same span (a kept one's
    # each a span of its own where aiohttp is instrumented).
    for s, calls in zip(
        seen["seen"][1:],
        itertools.batched(seen["upstream_headers"][2:], 2, strict=True),
        strict=True,
    ):
        assert [upstream_trace({"upstream_traceparent": p}) for p, _ in calls] == [
            (s["trace_id"], s["recording"])
        ] * 2
        assert [state for _, state in calls] == [None, None]
        if not s["recording"]:
            assert calls[0] == calls[1]


def test_a_sampled_client_trace_is_recorded_with_its_instrumentation():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    seen = sampled_first(f"00-{trace_id}-00f067aa0ba902b7-01")
    assert seen["seen"][0] == {
        "trace_id": trace_id,
        "recording": True,
        "child": True,
        "instrumented": True,
        "upstream_traceparent": seen["seen"][0]["upstream_traceparent"],
        "upstream_hooks": seen["seen"][0]["upstream_hooks"],
        "span_id": seen["seen"][0]["span_id"],
    }
    assert seen["seen"][0]["upstream_traceparent"].startswith(f"00-{trace_id}-")
    assert trace_id in seen["servers"]


# A worker's background work and its probes, with tracing on and every new trace kept: the
# probes through the app, the database checks and their watchdog for a few rounds, a write
# retried in the background; then the same kind of Redis call inside a span of the script's
# own, which must be recorded (the instrumentation is on in this process).
BACKGROUND_SCRIPT = r"""
import asyncio, json, time
import django
django.setup()
import config.asgi
from asgiref.testing import ApplicationCommunicator
from django.core.cache import caches
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from core import db
from core.retry import RetryInBackground

memory = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))

async def get(path):
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [], "scheme": "http", "server": ("t", 80),
             "client": ("127.0.0.1", 1), "http_version": "1.1", "asgi": {"version": "3.0"}}
    communicator = ApplicationCommunicator(config.asgi.application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    await communicator.receive_output(10)
    return start["status"]

readyz = [asyncio.run(get(path)) for path in ("/readyz", "/healthz", "/readyz")][0]
# Only the exact paths are probes: this one is a request like any other, traced.
not_a_probe = asyncio.run(get("/no/metrics"))
import io, sys, config.wsgi
wsgi = []
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/readyz", "QUERY_STRING": "",
           "SERVER_NAME": "t", "SERVER_PORT": "80", "wsgi.input": io.BytesIO(),
           "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
           "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}
b"".join(config.wsgi.application(environ, lambda status, *a: wsgi.append(status)))
db.replica_checkers_start()
time.sleep(4 * db.settings.REPLICA_CHECK_SECONDS)
attempts = []

def attempt():
    attempts.append(1)
    caches["default"].set("untraced", len(attempts))
    return len(attempts) > 1

retry = RetryInBackground("traced-retry", attempt, within=lambda: 30, every=0.1)
retry.later()
while retry.pending:
    time.sleep(0.05)
with trace.get_tracer("test").start_as_current_span("control") as control:
    caches["default"].get("untraced")
ours = control.get_span_context().trace_id
print(json.dumps({
    "readyz": readyz,
    "not_a_probe": not_a_probe,
    "wsgi_readyz": wsgi[0],
    "attempts": len(attempts),
    "spans": [[s.name, s.context.trace_id == ours] for s in memory.get_finished_spans()
              if s.kind != trace.SpanKind.SERVER],
    "servers": [[s.name, s.attributes.get("url.path", s.attributes.get("http.target"))]
                for s in memory.get_finished_spans() if s.kind == trace.SpanKind.SERVER],
    "propagated": sorted(propagate.get_global_textmap().fields),
}))
"""


def test_probes_checks_and_background_retries_start_no_trace(
    postgres_container, redis_container, redis_cache_container
):
    from tests.app.conftest import DB_PASSWORD, REDIS_CACHE_PASSWORD, REDIS_PASSWORD, _address

    db_host, db_port = (
        postgres_container.get_container_host_ip(),
        postgres_container.get_exposed_port(5432),
    )
    redis_host, redis_port = _address(redis_container)
    cache_host, cache_port = _address(redis_cache_container)
    lines = django_script(
        BACKGROUND_SCRIPT,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "DB_HOST": db_host,
            "DB_PORT": str(db_port),
            "DB_PASSWORD": DB_PASSWORD,
            "DB_NAME": "app",
            "DB_REPLICA_NAMES": "app",
            "REDIS_HOST": redis_host,
            "REDIS_PORT": str(redis_port),
            "REDIS_PASSWORD": REDIS_PASSWORD,
            "REDIS_CACHE_HOST": cache_host,
            "REDIS_CACHE_PORT": str(cache_port),
            "REDIS_CACHE_PASSWORD": REDIS_CACHE_PASSWORD,
        },
        drop=not_otel,
    )
    (line,) = [line for line in lines if line.startswith('{"readyz"')]
    seen = json.loads(line)
    # The probe reached every dependency (only the replica, here the primary itself, does not
    # serve), and the retry made its two Redis calls.
    assert seen["readyz"] == 200
    assert seen["wsgi_readyz"].startswith("200")
    assert seen["attempts"] == 2
    # Nothing but the script's own span and its Redis call was recorded: each SQL statement of
    # the checks and the probe, and each Redis call of the probe and the retry, would otherwise
    # be the root of a trace of its own.
    assert sorted(seen["spans"]) == [["GET", True], ["control", True]]
    # Named after its route, of which it has none: the method alone, never a client's path.
    assert seen["servers"] == [["GET", "/no/metrics"]]
    # Only the W3C trace context crosses to upstreams and tasks; a client's baggage does not.
    assert seen["propagated"] == ["traceparent", "tracestate"]


# The event loop's Redis client (core.resp) with tracing on: its commands inside a recording
# span, outside any span, inside a suppressed one, and one that fails.
PIPELINED_REDIS_SCRIPT = r"""
import asyncio, inspect, json, sys
import django
django.setup()
from core import tracing
tracing.setup(component="web")
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from core.resp import PipelinedRedis, RespError

memory = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))
host, port, password, closed_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

async def main():
    client = PipelinedRedis(host=host, port=port, password=password, db=2, timeout=1)
    broken = PipelinedRedis(host="127.0.0.1", port=closed_port, password=None, db=0, timeout=1)
    await client.execute("PING")  # outside any span
    with trace.get_tracer("test").start_as_current_span("request"):
        replies = [await client.execute(b"MGET", "page:1", "version"),
                   await client.execute("HGET", "stock:v:1", "n")]
        with suppress_instrumentation():
            await client.execute("PING")
        try:
            await broken.execute("GET", "x")
        except RespError:
            pass
    await client.aclose()
    return replies

replies = asyncio.run(main())
spans = memory.get_finished_spans()
names = {s.context.span_id: s.name for s in spans}
print(json.dumps({
    "replies": [repr(r) for r in replies],
    # Wrapped, still a coroutine function to whoever asks, as execute is.
    "coroutine_function": inspect.iscoroutinefunction(PipelinedRedis.execute),
    "spans": [[s.name, names.get(s.parent.span_id) if s.parent else None, str(s.kind),
               dict(s.attributes), s.status.status_code.name] for s in spans],
}))
"""


def test_the_event_loops_redis_commands_are_spans_of_the_request_that_sent_them(
    redis_cache_container,
):
    from tests.app.conftest import REDIS_CACHE_PASSWORD, _address
    from tests.app.core.test_resp import _unused_port

    host, port = _address(redis_cache_container)
    closed = _unused_port()
    lines = django_script(
        PIPELINED_REDIS_SCRIPT,
        host,
        str(port),
        REDIS_CACHE_PASSWORD,
        str(closed),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        },
        drop=not_otel,
    )
    (line,) = [line for line in lines if line.startswith('{"replies"')]
    seen = json.loads(line)
    assert seen["replies"] == ["[None, None]", "None"]
    assert seen["coroutine_function"] is True
    redis = {"db.system": "redis", "net.peer.name": host, "net.peer.port": port,
             "net.transport": "ip_tcp"}  # fmt: skip
    # The commands inside the request, children of its span, their values left out; none for
    # the command outside any span nor for the suppressed one; a failed one is an error.
    assert seen["spans"] == [
        ["MGET", "request", "SpanKind.CLIENT",
         {**redis, "db.statement": "MGET ? ?", "db.redis.database_index": 2}, "UNSET"],
        ["HGET", "request", "SpanKind.CLIENT",
         {**redis, "db.statement": "HGET ? ?", "db.redis.database_index": 2}, "UNSET"],
        ["GET", "request", "SpanKind.CLIENT",
         {**redis, "net.peer.name": "127.0.0.1", "net.peer.port": closed,
          "db.statement": "GET ?", "db.redis.database_index": 0}, "ERROR"],
        ["request", None, "SpanKind.INTERNAL", {}, "UNSET"],
    ]  # fmt: skip


# Requests whose tracestate breaks W3C's rules (a member's format, too many members), sampled and
# not: the header is dropped as W3C says, and the client's value never reaches the log.
BAD_TRACESTATE_SCRIPT = (
    r"""
import asyncio, json
import django
django.setup()
from asgiref.testing import ApplicationCommunicator
from core import tracing

async def inner(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

app = tracing.wrap_asgi(inner)

"""
    + ASGI_GET
    + r"""

statuses = []
for flags in ("00", "01"):
    parent = f"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}".encode()
    for state in (b"k=" + b"x" * 300, b"BAD KEY=v", b",".join(b"k%d=v" % i for i in range(40))):
        statuses.append(asyncio.run(get([(b"traceparent", parent), (b"tracestate", state)])))
print(json.dumps({"statuses": sorted(set(statuses))}))
"""
)


def test_a_clients_malformed_tracestate_is_dropped_without_a_log_line_per_request():
    report, lines = traced_script(BAD_TRACESTATE_SCRIPT)
    assert report == {"statuses": [200]}
    assert not [line for line in lines if "tracestate" in line.lower() or "w3c" in line], lines
