"""runtime.edge answers a declared route's cache hits in front of Django, as Django would: the
same status, headers and bytes, and only where Django would answer them 200."""

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest

from core import metrics, request_context
from runtime import edge, workers
from runtime.asgi import PooledExecutorASGIHandler
from runtime.edge import Edge, EdgeRoute
from tests.app.runtime import edge_urls
from tests.app.runtime.asgi_scope import Answer, answer, scope
from tests.support import django_script

pytestmark = [pytest.mark.urls("tests.app.runtime.edge_urls")]
# Per request: never compared.
VOLATILE = {b"x-request-id", b"x-request-duration"}


def parse(query: bytes) -> dict[str, Any] | None:
    if not query:
        return {"n": 1}
    name, _, value = query.partition(b"=")
    return {"n": int(value)} if name == b"n" and value.isdigit() else None


class Counted:
    """Django's handler, counting the requests it answers."""

    def __init__(self) -> None:
        self.handler = PooledExecutorASGIHandler()
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        await self.handler(scope, receive, send)


@pytest.fixture(autouse=True)
def pages() -> None:
    edge_urls.PAGES.clear()
    edge_urls.PAGES.update({1: b'{"page": 1}', 2: b'{"page": 2}'})
    edge_urls.COOKIE.clear()
    edge_urls.REQUIRE_AUTH.clear()
    edge_urls.HANDED.clear()


@pytest.fixture
def django_app() -> Iterator[Counted]:
    app = Counted()
    yield app
    app.handler.executors.close()


@pytest.fixture
def hits() -> dict[int, bytes]:
    """What the cache holds: the hit's answers (a page missing is a miss)."""
    return dict(edge_urls.PAGES)


def edge_around(django_app: Counted, hits: dict[int, bytes]) -> Edge:
    async def hit(*, n: int) -> bytes | None:
        return hits.get(n)

    return Edge(django_app, (EdgeRoute(view_name="edge-page", parse=parse, hit=hit),))


@pytest.fixture
def app(django_app: Counted, hits: dict[int, bytes]) -> Edge:
    return edge_around(django_app, hits)


async def _get(
    app: Any, path: str, query: bytes, headers: list[tuple[bytes, bytes]], host: bytes
) -> Answer:
    return await answer(app, {**scope(path, headers=headers, host=host), "query_string": query})


def get(
    app: Any,
    path: str = "/page",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes = b"testserver",
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    result: tuple[int, list[tuple[bytes, bytes]], bytes] = asyncio.run(
        _get(app, path, query, headers or [], host)
    )
    return result


def stable(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in headers if k not in VOLATILE)


@pytest.mark.django_db
def test_after_djangos_first_answer_a_hit_is_answered_alike_without_django(app, django_app):
    django = get(app, query=b"n=2")
    assert django_app.calls == 1
    hit = get(app, query=b"n=2")
    assert django_app.calls == 1  # the edge answered
    assert hit[0] == django[0] == 200
    assert hit[2] == django[2] == b'{"page": 2}'
    assert stable(hit[1]) == stable(django[1])
    assert {k for k, _ in hit[1]} >= VOLATILE
    assert dict(hit[1])[b"x-frame-options"] == b"DENY"  # Django's middleware, replayed


@pytest.mark.django_db
def test_a_clients_request_id_is_kept_and_the_hit_counted_as_djangos_answers(app, django_app):
    get(app)
    before = metrics.REQUESTS.labels("GET", "edge-page", "200")._value.get()
    _, headers, _ = get(app, headers=[(b"x-request-id", b"client-chosen-id")])
    assert django_app.calls == 1
    assert dict(headers)[b"x-request-id"] == b"client-chosen-id"
    assert metrics.REQUESTS.labels("GET", "edge-page", "200")._value.get() == before + 1


@pytest.mark.django_db
def test_a_miss_is_answered_by_django(app, django_app, hits):
    get(app)
    hits.clear()
    assert get(app, query=b"n=2")[2] == b'{"page": 2}'
    assert django_app.calls == 2


@dataclass(frozen=True)
class Missed:
    n: int


@pytest.mark.django_db
def test_a_miss_hands_what_the_hit_read_to_the_routes_view(django_app, hits):
    # The view reuses the edge's read rather than reading again (shop.cache's page read).
    async def hit(*, n: int) -> bytes | Missed:
        return hits.get(n) or Missed(n)

    app = Edge(django_app, (EdgeRoute(view_name="edge-page", parse=parse, hit=hit),))
    get(app)  # learned: the edge read nothing
    hits.clear()
    assert get(app, query=b"n=2")[2] == b'{"page": 2}'
    seen = edge_urls.HANDED
    assert seen == [None, Missed(2)]


@pytest.mark.django_db
@pytest.mark.parametrize("fails", [False, True])
def test_what_a_miss_handed_ends_with_its_request(django_app, fails):
    # Whatever runs next in this context (the next request of a WSGI thread, a task the
    # request left behind) is not handed this request's read, even when Django failed.
    async def hit(*, n: int) -> bytes | Missed:
        return Missed(n)

    async def django(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if fails:
            raise RuntimeError("Django failed")
        await django_app(scope, receive, send)

    app = Edge(django, (EdgeRoute(view_name="edge-page", parse=parse, hit=hit),))
    app.learned[("/page", False)] = []

    async def direct() -> object:
        request = {**scope("/page"), "query_string": b"n=2"}
        sent: list[Any] = []

        bodies = [{"type": "http.request", "body": b""}]

        async def receive() -> dict[str, Any]:
            if bodies:
                return bodies.pop()
            await asyncio.Event().wait()  # the client stays
            raise AssertionError

        async def send(message: Any) -> None:
            sent.append(message)

        with contextlib.suppress(RuntimeError):
            await app(request, receive, send)
        return edge.handed()

    assert asyncio.run(direct()) is None
    if not fails:
        seen = edge_urls.HANDED
        assert seen == [Missed(2)]


@pytest.mark.django_db
@pytest.mark.parametrize("query", [b"n=x", b"n=2&n=3", b"m=1"])
def test_a_query_the_route_does_not_read_plainly_is_djangos(app, django_app, query):
    get(app)
    get(app, query=query)
    assert django_app.calls == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("host", "headers"),
    [
        (b"evil.example", []),
        (b"", []),
        # Two Host headers: Django reads them joined, "testserver,evil.example", and refuses.
        (b"testserver", [(b"host", b"evil.example")]),
    ],
)
def test_a_host_django_refuses_is_refused_by_django(app, django_app, host, headers):
    get(app)
    status, _, _ = get(app, host=host, headers=headers)
    assert status == 400
    assert django_app.calls == 2


@pytest.mark.django_db
def test_other_methods_and_paths_are_djangos(app, django_app):
    get(app)
    get(app, path="/page/")  # not the route's path
    assert django_app.calls == 2


@pytest.mark.django_db
def test_a_request_with_a_cookie_is_djangos(app, django_app):
    get(app)
    get(app, headers=[(b"cookie", b"sessionid=abc")])
    assert django_app.calls == 2


@pytest.mark.django_db
def test_a_route_that_requires_a_credential_is_never_answered_by_the_edge(app, django_app):
    # A fork puts auth on the route: a credentialed 200 is neither learned from nor served,
    # and an anonymous request gets Django's 401 however often it asks.
    edge_urls.REQUIRE_AUTH[:] = [True]
    credential = [(b"authorization", b"Bearer staff-token")]
    assert get(app, headers=credential)[0] == 200
    assert get(app, headers=credential)[0] == 200
    assert [get(app)[0] for _ in range(3)] == [401, 401, 401]
    assert django_app.calls == 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "value", "status"),
    [("PREPEND_WWW", True, 301), ("DISALLOWED_USER_AGENTS", [re.compile("Mozilla")], 403)],
)
def test_a_redirect_or_refusal_django_owes_is_djangos(
    app, django_app, settings, setting, value, status
):
    browser = [(b"user-agent", b"Mozilla/5.0")]
    get(app, headers=browser)
    setattr(settings, setting, value)
    assert get(app, headers=browser)[0] == status
    assert django_app.calls == 2


@pytest.mark.django_db
def test_an_answer_that_sets_a_cookie_is_never_replayed(app, django_app):
    edge_urls.COOKIE["chosen"] = "for-this-client"
    get(app)
    _, headers, _ = get(app)
    assert django_app.calls == 2
    assert b"set-cookie" in dict(headers)


@pytest.mark.django_db
def test_plain_http_while_https_is_required_gets_djangos_redirect(settings, hits):
    # Django's SecurityMiddleware reads its settings when the handler loads it.
    settings.SECURE_SSL_REDIRECT = True
    django_app = Counted()
    app = edge_around(django_app, hits)
    secure = [(b"x-forwarded-proto", b"https")]
    get(app, headers=secure)
    assert get(app, headers=secure)[0] == 200
    assert django_app.calls == 1  # learned for https, and served
    assert get(app)[0] == 301
    assert django_app.calls == 2


@pytest.mark.django_db
def test_https_and_http_answers_are_learned_apart(settings, hits):
    settings.SECURE_HSTS_SECONDS = 600
    django_app = Counted()
    app = edge_around(django_app, hits)
    secure = [(b"x-forwarded-proto", b"https")]
    get(app)
    _, plain, _ = get(app)
    get(app, headers=secure)
    _, https, _ = get(app, headers=secure)
    assert django_app.calls == 2
    assert b"strict-transport-security" not in dict(plain)
    assert dict(https)[b"strict-transport-security"] == b"max-age=600"


@pytest.mark.django_db
def test_a_hit_while_the_worker_drains_closes_its_connection_as_djangos_answer_does(
    app, django_app, monkeypatch
):
    get(app)
    assert b"connection" not in dict(get(app)[1])
    # The server drains (runtime.workers, before the worker is replaced): each answer closes
    # its connection, so that the client's next request goes to another worker.
    monkeypatch.setattr(workers, "draining", lambda: True)
    _, hit, _ = get(app)
    assert django_app.calls == 1
    assert dict(hit)[b"connection"] == b"close"
    _, djangos, _ = get(app, headers=[(b"cookie", b"a=b")])  # Django's, for comparison
    assert django_app.calls == 2
    assert dict(djangos)[b"connection"] == b"close"


def outcome(read: Callable[[], object]) -> object:
    try:
        return read()
    except DisallowedHost:
        return DisallowedHost


@pytest.mark.parametrize(
    ("headers", "server", "scheme", "changed"),
    [
        ([(b"host", b"testserver")], ("testserver", 80), "http", {}),
        ([(b"host", b"evil.example")], ("testserver", 80), "http", {}),
        ([(b"host", b"testserver"), (b"host", b"evil.example")], ("testserver", 80), "http", {}),
        ([(b"Host", b"evil.example")], ("testserver", 80), "http", {}),
        ([(b"x_host", b"testserver")], ("testserver", 80), "http", {}),
        ([], ("testserver", 80), "http", {}),
        ([], ("testserver", 443), "https", {}),
        ([], ("testserver", 8000), "http", {}),
        ([], None, None, {}),
        ([(b"x-forwarded-proto", b"https"), (b"x-forwarded-proto", b"http")], None, "http", {}),
        ([(b"X-Forwarded-Proto", b" https ")], None, "http", {}),
        ([(b"x_forwarded_proto", b"https")], None, "http", {}),
        ([(b"x-forwarded-proto", b"http")], None, "https", {}),
        ([(b"x-scheme", b"https")], None, "http", {"SECURE_PROXY_SSL_HEADER": None}),
        (
            [(b"x-scheme", b"https")],
            None,
            "http",
            {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_SCHEME", "https")},
        ),
        (
            [(b"host", b"testserver"), (b"x-forwarded-host", b"evil.example")],
            None,
            "http",
            {"USE_X_FORWARDED_HOST": True},
        ),
        ([(b"x-forwarded-host", b"testserver")], None, "http", {"USE_X_FORWARDED_HOST": True}),
        (
            [(b"x-forwarded-port", b"8000")],
            ("testserver", 80),
            "http",
            {"USE_X_FORWARDED_PORT": True},
        ),
        (
            [(b"host", b"store.localhost")],
            None,
            "http",
            {"DEBUG": True, "ALLOWED_HOSTS": []},
        ),
    ],
)
def test_the_host_and_scheme_are_djangos_reading_of_the_request(
    settings, headers, server, scheme, changed
):
    for name, value in changed.items():
        setattr(settings, name, value)
    request = {"type": "http", "method": "GET", "path": "/page", "headers": headers}
    request |= {"server": server} if server else {}
    request |= {"scheme": scheme} if scheme else {}
    djangos = ASGIRequest(request, io.BytesIO())
    edges = edge._request(request)
    assert edges is not None
    assert edges.is_secure() == djangos.is_secure()
    assert outcome(edges.get_host) == outcome(djangos.get_host)


@pytest.mark.parametrize(
    ("headers", "changed"),
    [
        # Keys Django's request.META never holds for a header: Django reads the scope's scheme.
        (
            [(b"x-forwarded-proto", b"https")],
            {"SECURE_PROXY_SSL_HEADER": ("HTTP_X-FORWARDED-PROTO", "https")},
        ),
        (
            [(b"x-forwarded-proto", b"https")],
            {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_Forwarded_Proto", "https")},
        ),
        ([(b"x-forwarded-proto", b"https")], {"SECURE_PROXY_SSL_HEADER": ("REMOTE_ADDR", "https")}),
        # "ß" upper-cases to "SS": Django joins both into HTTP_X_FORWARDED_SSL.
        (
            [("x-forwarded-ßl".encode(), b"off"), (b"x-forwarded-ssl", b"on")],
            {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_SSL", "on")},
        ),
    ],
)
def test_a_request_the_edge_cannot_read_as_django_does_is_djangos(
    app, django_app, settings, headers, changed
):
    for name, value in changed.items():
        setattr(settings, name, value)
    request = {"type": "http", "method": "GET", "path": "/page", "headers": headers}
    assert edge._request(request | {"scheme": "http"}) is None
    get(app)
    get(app, headers=headers)
    assert django_app.calls == 2


@pytest.mark.django_db
def test_a_miss_is_answered_under_the_request_id_its_read_was_logged_with(django_app):
    # A read that logs (a hung cache's warning) and Django's answer name one request.
    read_under: list[str | None] = []

    async def hit(*, n: int) -> bytes | None:
        read_under.append(request_context.REQUEST_ID.get())
        return None

    app = Edge(django_app, (EdgeRoute(view_name="edge-page", parse=parse, hit=hit),))
    get(app)
    _, headers, _ = get(app, query=b"n=2")
    assert django_app.calls == 2
    assert read_under == [dict(headers)[b"x-request-id"].decode()]


@pytest.mark.django_db
def test_a_route_whose_read_fails_is_answered_by_django(django_app, caplog):
    async def hit(*, n: int) -> bytes | None:
        raise RuntimeError("the route's cache client broke")

    app = Edge(django_app, (EdgeRoute(view_name="edge-page", parse=parse, hit=hit),))
    get(app)
    with caplog.at_level(logging.ERROR, logger="runtime.edge"):
        status, _, body = get(app, query=b"n=2")
    assert (status, body) == (200, b'{"page": 2}')
    assert django_app.calls == 2
    assert "the route's cache client broke" in caplog.text


def test_a_middleware_it_was_not_reviewed_against_turns_it_off(django_app, settings, caplog):
    # A fork's own middleware (a login requirement, a maintenance page) would be passed by.
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]

    async def hit(*, n: int) -> bytes | None:
        return None

    with caplog.at_level(logging.WARNING, logger="runtime.edge"):
        off = Edge(django_app, (EdgeRoute(view_name="edge-page", parse=parse, hit=hit),))
    assert off.routes == {}
    assert "LoginRequiredMiddleware" in caplog.text


def test_the_projects_middleware_is_the_reviewed_chain():
    # A middleware added to settings.MIDDLEWARE turns the edge off until it is reviewed.
    assert edge.reviewed(settings.MIDDLEWARE)


# A route served through the edge inside the tracing wrapper, as config/asgi.py composes them:
# Django answers the first request, the edge the second. Prints the server spans exported.
TRACED_SCRIPT = r"""
import asyncio, json, sys, types
import django
django.setup()
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.http import HttpResponse
from django.urls import path
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from core import tracing
from runtime.asgi import get_asgi_application
from runtime.edge import Edge, EdgeRoute

urls = types.ModuleType("traced_edge_urls")
urls.urlpatterns = [
    path("api/page", lambda request: HttpResponse(b"{}", content_type="application/json"),
         name="edge-page"),
]
sys.modules[urls.__name__] = urls
settings.ROOT_URLCONF = urls.__name__
django_calls = []
handler = get_asgi_application()

async def django_app(scope, receive, send):
    django_calls.append(scope["path"])
    await handler(scope, receive, send)

async def hit():
    return b"{}"

route = EdgeRoute(view_name="edge-page", parse=lambda query: {} if not query else None, hit=hit)
app = tracing.wrap_asgi(Edge(django_app, (route,)))
memory = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))

async def get():
    scope = {"type": "http", "method": "GET", "path": "/api/page", "raw_path": b"/api/page",
             "query_string": b"", "scheme": "http", "headers": [(b"host", b"localhost")],
             "server": ("localhost", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
             "asgi": {"version": "3.0"}}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    while (await communicator.receive_output(10)).get("more_body"):
        pass
    return start["status"]

statuses = [asyncio.run(get()), asyncio.run(get())]
print(json.dumps({
    "statuses": statuses,
    "django_calls": len(django_calls),
    "servers": [
        {"name": s.name, "route": s.attributes.get("http.route")}
        for s in memory.get_finished_spans() if s.kind == trace.SpanKind.SERVER
    ],
}))
"""


def test_a_hit_the_edge_answers_is_traced_in_a_span_named_as_djangos():
    lines = django_script(
        TRACED_SCRIPT,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_TRACES_SAMPLER": "always_on",
        },
        drop=lambda name: name.startswith("OTEL_"),
    )
    (line,) = [line for line in lines if line.startswith('{"statuses"')]
    seen = json.loads(line)
    assert seen["statuses"] == [200, 200]
    assert seen["django_calls"] == 1  # the second: the edge's
    djangos, edges = seen["servers"]
    assert djangos == {"name": "GET api/page", "route": "api/page"}
    assert edges == djangos
