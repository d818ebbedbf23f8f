"""OpenTelemetry tracing: on when OTEL_EXPORTER_OTLP_ENDPOINT names a collector, otherwise off.

Off means off: nothing here imports opentelemetry until setup() runs, so a process without the
variable never loads it (tests/app/core/test_tracing.py) and pays nothing per request.

One trace per request:
- web: the server span comes from the ASGI (or WSGI) middleware wrapped around Django, continuing
  the client's W3C `traceparent` when it sent one (Nginx passes it through), else a new trace;
  RouteSpanMiddleware names it after the Django route and view ("POST api/orders"). The pure
  ASGI middleware, not opentelemetry-instrumentation-django: that one is a sync-only Django
  middleware and would push every request of the async stack through a thread.
- inside it: each SQL statement (psycopg), each Redis command (redis-py: cache, read-your-writes
  marks, the broker publish; core.resp: the event loop's reads of the cache instance, spanned
  here), each upstream call of the product page (aiohttp, which sends `traceparent` on:
  UpstreamSessions) and each Celery publish, whose message headers carry the trace context.
- worker: the task's span continues that trace (the Celery instrumentation reads the headers);
  the task's own SQL and Redis calls are its children. The outbox relay is enqueued after the
  order's commit, still inside the request, so it joins the request's trace; an email the
  sweeper sends later (broker down at commit) starts a trace of its own.
- logs: every JSON line written inside a span has trace_id and span_id next to request_id
  (core.logging).

Spans leave through a BatchSpanProcessor: a background thread exports them over OTLP/HTTP
(protobuf) to $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces; a request never waits on the collector,
and while it is down at most OTEL_BSP_MAX_QUEUE_SIZE (2048) spans wait, the rest are dropped.
Which traces are kept is OTEL_TRACES_SAMPLER and its ARG, under TRACES_MAX_PER_SECOND, read by
settings (sampler()); a web
request the sampler drops is decided on before any of the above runs, and skips it all
(core.sampled_asgi). The SDK's other standard variables (headers, batch sizes) work as
OpenTelemetry documents them.
"""

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

# Probes and scrapes: frequent and all alike; a trace of each, or a root span of each SQL or
# Redis call they make, would only bury the real ones. Exact paths (OpenTelemetry's own
# exclusion is a regex search: it would drop /api/orders/metrics too).
EXCLUDED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_started = False
# True for the length of a web request the sampler dropped (core.sampled_asgi): this module's own
# checks for a recording span read it first, in one call where OpenTelemetry's take several.
unsampled: ContextVar[bool] = ContextVar("unsampled_request", default=False)
# What decides a trace started here: the sampler's root under ParentBased (setup()).
_new_traces: Any = None


def enabled() -> bool:
    from django.conf import settings  # this module is imported while settings load

    return bool(settings.OTEL_EXPORTER_OTLP_ENDPOINT)


def setup(*, component: str) -> bool:
    """Starts tracing in this process, once; False when it is off or already on.

    `component` names the service in every span
    (djstack-web, djstack-worker).
    Web calls it while loading the app (a preloaded Gunicorn master: the SDK restarts its export
    thread in each forked worker); Celery in each pool process (worker_process_init).
    """
    global _started, _new_traces
    if not enabled() or _started:
        return False
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor  # demo-shop
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from core import logging as json_logging
    from core.sampled_asgi import PresetIdGenerator

    _new_traces, whole = samplers(component=component)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"djstack-{component}"}),
        sampler=whole,
        id_generator=PresetIdGenerator(),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # W3C trace context only. OpenTelemetry's default also carries `baggage`, which would pass a
    # client's header, whatever it says, on to the upstream services and into Celery messages.
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    for instrumentor in (
        PsycopgInstrumentor(),
        RedisInstrumentor(),
        AioHttpClientInstrumentor(),  # demo-shop
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    _trace_pipelined_redis()
    json_logging.trace_ids = current_trace_ids
    _started = True
    return True


def _trace_pipelined_redis() -> None:
    """core.resp's commands (the event loop's reads of the cache instance) as CLIENT spans of
    the request that sent them, with the attributes redis-py's instrumentation gives its own,
    so both read alike in a trace. Only inside a recording span, as that instrumentation: a
    request the sampler dropped pays one check per command (`unsampled`)."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    from core.resp import PipelinedRedis, Reply

    execute = PipelinedRedis.execute
    if getattr(execute, "traced", False):
        return
    tracer = trace.get_tracer(__name__)

    async def spanned(client: PipelinedRedis, args: tuple[bytes | str | int, ...]) -> Reply:
        command = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        attributes: dict[str, str | int] = {
            "db.system": "redis",
            "db.statement": " ".join([command, *"?" * (len(args) - 1)]),  # values left out
            "db.redis.database_index": client.db,
            "net.peer.name": client.host,
            "net.peer.port": client.port,
            "net.transport": "ip_tcp",
        }
        with tracer.start_as_current_span(
            command, kind=trace.SpanKind.CLIENT, attributes=attributes
        ):
            return await execute(client, *args)

    # Not a coroutine of its own: a call outside a recording span gets execute's own, with no
    # layer above it to pass through at each resumption.
    @functools.wraps(execute)
    def traced(client: PipelinedRedis, *args: bytes | str | int) -> Awaitable[Reply]:
        if (
            unsampled.get()
            or not trace.get_current_span().is_recording()
            or not is_instrumentation_enabled()
        ):
            return execute(client, *args)
        return spanned(client, args)

    # A coroutine function still to whoever asks (inspect, asyncio), as execute is.
    inspect.markcoroutinefunction(traced)
    traced.traced = True  # type: ignore[attr-defined]
    PipelinedRedis.execute = traced  # type: ignore[method-assign,assignment]


def samplers(*, component: str) -> tuple[Any, Any]:
    """The sampler settings.OTEL_TRACES_SAMPLER names, built here rather than by the SDK from
    the environment, so the project's default holds wherever the variable is unset; first what
    decides a new trace under it (its root, or itself). Under a parentbased_* sampler each
    process records at most TRACES_MAX_PER_SECOND traces a second (core.sampling) of the new
    ones the ratio keeps, and in web (whose parents are its clients') as many again of those a
    client's traceparent asks for, whichever the root: a budget each, so clients asking for
    every trace cannot starve the ratio's. A plain sampler is asked for every span: no cap
    there."""
    from django.conf import settings
    from opentelemetry.sdk.trace import sampling

    from core.sampling import CappedParent, CappedRatio, TraceBudget

    name: str = settings.OTEL_TRACES_SAMPLER
    ratio: float = settings.OTEL_TRACES_SAMPLER_ARG
    parent_based = name.startswith("parentbased_")
    cap: float = settings.TRACES_MAX_PER_SECOND
    budget = TraceBudget(cap) if parent_based and cap > 0 else None
    root = name.removeprefix("parentbased_")
    chosen: sampling.Sampler = (
        (CappedRatio(ratio, budget=budget) if parent_based else sampling.TraceIdRatioBased(ratio))
        if root == "traceidratio"
        else sampling.ALWAYS_ON
        if root == "always_on"  # every new trace, as asked: uncapped
        else sampling.ALWAYS_OFF
    )
    if not parent_based:
        return chosen, chosen
    if budget is None or component != "web":
        return chosen, sampling.ParentBased(chosen)
    clients = CappedParent(budget=TraceBudget(cap))
    return chosen, sampling.ParentBased(chosen, remote_parent_sampled=clients)


def flush(*, timeout_seconds: float = 2.0) -> None:
    """Exports the spans still queued, waiting at most this long: for a process about to end
    without running atexit (a Celery pool process is ended with os._exit)."""
    if not _started:
        return
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    provider.force_flush(timeout_millis=int(timeout_seconds * 1000))


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the span current in this context, as hex; None outside any."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def wrap_asgi(application: Any) -> Any:
    """The ASGI app inside the server-span middleware (config/asgi.py, when enabled()), which
    only the requests the sampler keeps go through (core.sampled_asgi)."""
    setup(component="web")
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from core.sampled_asgi import SampledFirstMiddleware

    # No spans for each receive/send message of a request: one server span per request. No
    # exclusions of its own: the excluded paths never reach it (SampledFirstMiddleware).
    traced = OpenTelemetryMiddleware(
        application, excluded_urls="", exclude_spans=["receive", "send"]
    )
    provider: Any = trace.get_tracer_provider()
    return SampledFirstMiddleware(
        application,
        traced,
        sampler=provider.sampler,
        root=_new_traces,
        id_generator=provider.id_generator,
        excluded_paths=EXCLUDED_PATHS,
    )


class UpstreamSessions:
    """The aiohttp sessions of an app's upstream calls: two over one connector (one pool, one
    limit), so a call pays for tracing only when its request is traced.

    aiohttp runs every hook of a session's trace configs on every call, recorded or not
    (docs/BENCHMARKS.md, section 9: what tracing costs a request the sampler drops). A call inside
    a recorded span goes through `traced`: OpenTelemetry's aiohttp instrumentation makes its span
    and sends its traceparent. Every other call goes through `plain`, which runs no hook and sends
    its request's trace context itself: a dropped request's (flags 00), so the upstream logs the
    trace ID and, parent-based, drops it too. With tracing off both are one session and no header
    is sent."""

    def __init__(self, connector: "aiohttp.BaseConnector", **options: Any) -> None:
        import aiohttp

        self.plain = aiohttp.ClientSession(connector=connector, **options)
        self.traced = self.plain
        # Read by pick() on every call: bound once here, not imported per call.
        self._trace: Any = None
        self._inject: Any = None
        self._dropped: Any = None
        if not _started:
            return
        from opentelemetry import propagate, trace

        from core.sampled_asgi import DroppedSpan, w3c_alone

        self._trace, self._inject = trace, propagate.inject
        # Under W3C trace context alone, a dropped request's headers are its span's, built once
        # for all its calls.
        self._dropped = DroppedSpan if w3c_alone() else None
        from opentelemetry.instrumentation import aiohttp_client  # demo-shop

        aiohttp_client.AioHttpClientInstrumentor.uninstrument_session(self.plain)  # demo-shop
        self.traced = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            # Sends the traceparent where no instrumentation does (it then sends its own).
            trace_configs=[_traceparent_config()],
            **options,
        )

    def pick(self) -> "tuple[aiohttp.ClientSession, dict[str, str] | None]":
        """The session for a call made now, and the headers it sends the trace in (None: the
        session's hooks do, or tracing is off)."""
        if self._trace is None:
            return self.plain, None
        span = self._trace.get_current_span()
        if span.is_recording():
            return self.traced, None
        if type(span) is self._dropped:
            return self.plain, span.traceparent()
        headers: dict[str, str] = {}
        self._inject(headers)
        return self.plain, headers

    def get(self, url: str, **options: Any) -> Any:
        """`session.get(url, ...)` on the session pick() names, with its trace headers: an
        async context manager of the response."""
        session, headers = self.pick()
        return session.get(url, headers=headers, **options)

    async def close(self) -> None:
        if self.traced is not self.plain:
            await self.traced.close()
        await self.plain.close()  # the connector's owner


def _traceparent_config() -> "aiohttp.TraceConfig":
    import aiohttp
    from opentelemetry import propagate

    async def on_request_start(session: Any, context: Any, params: Any) -> None:
        if "traceparent" not in params.headers:
            propagate.inject(params.headers)

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    return config


def wrap_wsgi(application: Any) -> Any:
    """The WSGI app (sync and gthread profiles) inside the server-span middleware; the excluded
    paths bypass it, untraced."""
    setup(component="web")
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    return _ProbesUntracedWSGI(application, OpenTelemetryMiddleware(application))


class _ProbesUntracedWSGI:
    """OpenTelemetry's WSGI middleware has no exclusions: a probe goes around it, with the
    instrumentations suppressed (Django builds its whole response inside the call)."""

    def __init__(self, app: Any, traced: Any) -> None:
        self.traced = traced
        self.probe = untraced(app)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") in EXCLUDED_PATHS:
            return self.probe(environ, start_response)
        return self.traced(environ, start_response)


def untraced[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """fn with no span of its own nor of the SQL, Redis or HTTP calls it makes: a probe, and the
    threads that check the databases or retry a write in the background. Each of those calls
    would otherwise start a trace of its own, sampled like a request (the checks alone, a few
    every second in each worker). Decided at each call: tracing may start after fn was
    wrapped (a module-level thread target)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _started:
            return fn(*args, **kwargs)
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        with suppress_instrumentation():
            return fn(*args, **kwargs)

    return run


def name_span(request: Any) -> None:
    """Names the request's server span after the Django route once the URL is resolved
    (`POST api/orders`, http.route): core.middleware.RouteSpanMiddleware, when enabled()."""
    match = getattr(request, "resolver_match", None)
    name_route_span(str(request.method), None if match is None else match.route)


def name_route_span(method: str, route: str | None) -> None:
    """The current server span's name: the method and the route (runtime.edge names its own)."""
    if unsampled.get():
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    if route is None:
        # No route: the method alone, as OpenTelemetry's conventions say; the raw path would
        # let each client name spans without bound.
        span.update_name(method)
        return
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
