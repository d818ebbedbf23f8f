"""Cached GET answers served in front of Django: a hit costs its cache read, not Django's
handler, middleware chain and API framework.

A domain declares an EdgeRoute: the view (by URL name), how to read a query string plainly
(`parse`: the hit's arguments, or None) and how to read the cached body (`hit`: the bytes; on a
miss anything else, which the route's view gets back from handed(), so that it does not read
again). Edge answers a request itself only when Django would answer it 200 with those same bytes
and the same headers; any doubt, and Django answers:

- only GET, on the route's exact path, with a query `parse` accepts, and no cookie or
  Authorization (a session, a CSRF token, messages or a credential may change what Django
  answers: a route that requires one answers an anonymous request 401, which is never learned);
- only a host Django's get_host() accepts, and no redirect or refusal due (SECURE_SSL_REDIRECT,
  as Django's is_secure() reads the request, PREPEND_WWW, DISALLOWED_USER_AGENTS);
- headers: those Django's middleware put on the route's last 200 in this process (or in the
  preloading master that forked it, config/preload.py's warm-up), for the same scheme, less
  the per-request ones, which Edge sets as the diagnostics middleware does (request ID,
  duration, the worker's draining). Until Django has answered the route once, or if that
  answer set a cookie, Django answers;
- only while settings.MIDDLEWARE holds nothing but REVIEWED_MIDDLEWARE: a middleware a fork adds
  (a login requirement, a maintenance page, an IP allow-list) would be passed by, so Edge then
  serves nothing and says so once, at startup.

Every request it answers is counted, timed and logged as Django's are (core.middleware's
request_observe, the memory guard) and named in its trace span.
"""

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.urls import resolve, reverse

from core import request_context, tracing
from core.middleware import request_observe
from runtime.middleware import worker_request_finished

log = logging.getLogger(__name__)

# The chain whose effect on a cached GET the learned headers carry: request ID and metrics
# (replayed here), probes (other paths), JSON errors (none on a 200), security headers and
# X-Frame-Options (learned), sessions, CSRF, auth and messages (untouched by an anonymous GET
# that reads no session: no cookie, no Vary, which Edge checks).
REVIEWED_MIDDLEWARE = frozenset(
    {
        "core.middleware.RouteSpanMiddleware",
        "runtime.middleware.RequestDiagnosticsMiddleware",
        "runtime.middleware.HealthCheckMiddleware",
        "core.middleware.JsonErrorMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
)
# Set per request, here as by the diagnostics middleware and the server: never learned.
PER_REQUEST = frozenset(
    {b"x-request-id", b"x-request-duration", b"content-length", b"connection", b"date", b"server"}
)
# Learned but never served from: an answer that depends on the client.
PERSONAL = frozenset({b"set-cookie", b"vary"})

Scope = dict[str, Any]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class EdgeRoute:
    view_name: str
    parse: Callable[[bytes], dict[str, Any] | None]
    # bytes: a hit, answered here. Anything else is a miss: Django answers, and the route's view
    # gets it from handed().
    hit: Callable[..., Awaitable[object]]


@dataclass(frozen=True)
class _Route:
    edge: EdgeRoute
    view: str  # the metrics' label, as Django's diagnostics name the view
    span: str  # the trace span's route, as RouteSpanMiddleware names it


# What the route's hit returned on this request's miss, while Django answers it.
_handed: ContextVar[object] = ContextVar("edge_handed", default=None)


def handed() -> object:
    """In a route's view: what its `hit` returned when the edge missed on this request (None if
    the edge did not read), so that the view uses that read rather than doing it again."""
    return _handed.get()


# The request headers the edge reads, by their names in request.META: those Django's
# get_host() and is_secure() may read, and those that leave the request to Django or name it.
_READ = {
    b"host": "HTTP_HOST",
    b"x-forwarded-host": "HTTP_X_FORWARDED_HOST",
    b"x-forwarded-port": "HTTP_X_FORWARDED_PORT",
    b"cookie": "HTTP_COOKIE",
    b"authorization": "HTTP_AUTHORIZATION",
    b"x-request-id": "HTTP_X_REQUEST_ID",
}


@functools.cache
def _read_headers(proxy_ssl_key: str | None) -> dict[bytes, str] | None:
    """_READ and the header settings.SECURE_PROXY_SSL_HEADER names; None if it names a key the
    edge cannot read as Django does (one ASGIRequest never fills, or not a header's): then
    Django answers every request."""
    if proxy_ssl_key is None:
        return _READ
    name = proxy_ssl_key.removeprefix("HTTP_").lower().replace("_", "-")
    if f"HTTP_{name.upper().replace('-', '_')}" != proxy_ssl_key:
        log.warning(
            "SECURE_PROXY_SSL_HEADER names %r, not a header as Django's request.META spells "
            "one: the edge leaves every request to Django",
            proxy_ssl_key,
        )
        return None
    return {**_READ, name.encode("latin-1"): proxy_ssl_key}


class _Request(HttpRequest):
    """What Django's get_host() and is_secure() read of an ASGIRequest: its META as
    ASGIRequest.__init__ fills it (the read headers only) and the scope's scheme."""

    def __init__(self, meta: dict[str, Any], scheme: str | None) -> None:
        # Not HttpRequest.__init__: nothing else of a request is read here.
        self.META = meta
        self.scope_scheme = scheme

    def _get_scheme(self) -> str:
        return self.scope_scheme or "http"  # ASGIRequest's


def _request(scope: Scope) -> _Request | None:
    """The scope as Django's get_host() and is_secure() would read it; None where the edge
    cannot tell (then Django answers)."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    names = _read_headers(proxy[0] if proxy else None)
    if names is None:
        return None
    meta: dict[str, Any] = {}
    # One pass; names as ASGIRequest reads them (it upper-cases them; one with "_" matches
    # none), and repeats joined with commas as it joins them. A name that is not ASCII may
    # upper-case into another's (str.upper: "ß" is "SS"): Django's, then.
    for name, value in scope["headers"]:
        if not name.isascii():
            return None
        key = names.get(name.lower())
        if key is not None:
            text = value.decode("latin-1")
            meta[key] = f"{meta[key]},{text}" if key in meta else text
    server = scope.get("server")
    meta["SERVER_NAME"], meta["SERVER_PORT"] = (
        (server[0], str(server[1])) if server else ("unknown", "0")
    )
    return _Request(meta, scope.get("scheme"))


def _host_allowed(request: HttpRequest) -> bool:
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


def reviewed(middleware: list[str]) -> bool:
    return set(middleware) <= REVIEWED_MIDDLEWARE


class Edge:
    """The ASGI app in front of Django's handler (config/asgi.py)."""

    def __init__(self, app: Any, routes: tuple[EdgeRoute, ...]) -> None:
        self.app = app
        self.declared = routes
        # By path, resolved at the first request: the URL resolver is built by the preloading
        # master (config/preload.py), or by the first request without preload, not at import.
        self._routes: dict[str, _Route] | None = None
        # (path, secure) -> the headers Django's last 200 there carried; None: never served here.
        self.learned: dict[tuple[str, bool], Headers | None] = {}
        self.traced = tracing.enabled()  # else nothing of OpenTelemetry is imported
        unreviewed = sorted(set(settings.MIDDLEWARE) - REVIEWED_MIDDLEWARE)
        if unreviewed:
            log.warning(
                "edge cache off: settings.MIDDLEWARE has %s, which a cached answer would pass "
                "by; review it and add it to runtime.edge.REVIEWED_MIDDLEWARE",
                ", ".join(unreviewed),
            )
            self._routes = {}

    @property
    def routes(self) -> dict[str, _Route]:
        if self._routes is None:
            routes = {}
            for route in self.declared:
                path = reverse(route.view_name)
                match = resolve(path)
                routes[path] = _Route(route, view=match.view_name, span=match.route)
            self._routes = routes
        return self._routes

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        arguments = route.edge.parse(scope.get("query_string", b""))
        if arguments is None:
            await self.app(scope, receive, send)
            return
        request = _request(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        meta = request.META
        secure = request.is_secure()
        if (
            "HTTP_COOKIE" in meta
            or "HTTP_AUTHORIZATION" in meta
            or (settings.SECURE_SSL_REDIRECT and not secure)
            or settings.PREPEND_WWW
            or settings.DISALLOWED_USER_AGENTS
            or not _host_allowed(request)
        ):
            await self.app(scope, receive, send)
            return
        # Django's diagnostics time the request from here: a miss's read is in its duration.
        start = perf_counter()
        request_context.mark_started(start)
        key = (scope["path"], secure)
        if key not in self.learned:
            await self.app(scope, receive, self._learning(key, send))
            return
        learned = self.learned[key]
        if learned is None:
            await self.app(scope, receive, send)
            return
        # For any line logged meanwhile, and for Django's answer to a miss; this task's own.
        request_id, _ = request_context.begin(meta.get("HTTP_X_REQUEST_ID"))
        try:
            found = await route.edge.hit(**arguments)
        except Exception:
            # A route's read failing is a miss: Django answers, as if there were no edge.
            log.exception("edge read of %s failed; Django answers", route.view)
            found = None
        if isinstance(found, bytes):
            await self._answer(scope, route, learned, found, request_id, start, send)
            return
        handing = _handed.set(found)
        try:
            await self.app(scope, receive, send)
        finally:
            _handed.reset(handing)

    def _learning(self, key: tuple[str, bool], send: Send) -> Send:
        async def learn(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [(k.lower(), v) for k, v in message.get("headers", [])]
                self.learned[key] = (
                    None
                    if any(k in PERSONAL for k, _ in headers)
                    else [(k, v) for k, v in headers if k not in PER_REQUEST]
                )
            await send(message)

        return learn

    async def _answer(
        self,
        scope: Scope,
        route: _Route,
        learned: Headers,
        body: bytes,
        request_id: str,
        start: float,
        send: Send,
    ) -> None:
        """Answers a hit as Django would."""
        seconds = perf_counter() - start
        if self.traced:
            tracing.name_route_span("GET", route.span)
        client = scope.get("client")
        request_observe(
            method="GET",
            path=scope["path"],
            client=client[0] if client else "",
            view=route.view,
            status=200,
            seconds=seconds,
        )
        response_headers = [
            *learned,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode("latin-1")),
            (b"x-request-duration", f"{seconds:.6f}".encode()),
        ]
        if worker_request_finished():
            response_headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
