"""URL names: the metrics' view label and reverse() name a route, never one of its operations.
And the methods the routes serve, which Nginx's own 405s name."""

import re
from collections import defaultdict

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from tests.support import ROOT


def _patterns(resolver: URLResolver, prefix: str = "") -> list[tuple[str, str | None, str]]:
    found = []
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            namespace = f"{entry.namespace}:" if entry.namespace else ""
            found += [(r, n, namespace + q) for r, n, q in _patterns(entry, route)]
        elif isinstance(entry, URLPattern):
            found.append((route, entry.name, ""))
    return found


def test_a_route_several_operations_answer_has_one_name():
    """django-ninja adds a pattern per operation on a path, each named after its function, and
    Django resolves the first: a GET of /api/products/1 was counted as "api:product_update".
    Operations that share a path share one url_name; the method label tells them apart."""
    names: dict[str, set[str | None]] = defaultdict(set)
    for route, name, _ in _patterns(get_resolver()):
        names[route].add(name)
    shared = {route: found for route, found in names.items() if len(found) > 1}
    assert shared == {}


def test_the_product_routes_are_named_for_the_route():
    assert resolve("/api/products/1").view_name == "api:product"
    assert resolve("/api/products").view_name == "api:products"
    assert resolve("/api/orders").view_name == "api:orders"


def _served_methods(client: Client) -> set[str]:
    """The methods the API's routes serve between them, as each route's own 405 names them (a
    method none serves, asked of each route with its parameters filled in)."""
    served: set[str] = set()
    for route, _, _ in _patterns(get_resolver()):
        if not route.startswith("api/"):
            continue
        path = "/" + re.sub(r"<[^>]+>", "1", route)
        response = client.generic("PROPFIND", path)
        if path == "/api/":
            assert response.status_code == 404  # the API's root: no route
            continue
        assert response.status_code == 405, (path, response.status_code)
        served |= {m.strip() for m in response["Allow"].split(",")}
    return served


def test_nginx_names_in_its_own_405s_the_methods_the_app_serves(client):
    """Nginx answers a 405 itself for TRACE, and for a static file's methods beyond GET and HEAD
    (nginx.conf, $nginx_allow): away from the static files its Allow must name what the API's
    routes serve between them, no more and no fewer."""
    conf = (ROOT / "nginx/nginx.conf").read_text()
    block = re.search(r"map \$uri \$nginx_allow \{(.*?)\}", conf, re.S)
    assert block is not None
    default = re.search(r'default "([^"]+)";', block[1])
    assert default is not None
    assert {m.strip() for m in default[1].split(",")} == _served_methods(client)
    assert '~^/static/ "GET, HEAD";' in block[1]


def test_the_schema_and_its_docs_page_refuse_other_methods_with_the_json_405():
    """django-ninja's views of the schema answered any method as a GET, and Django's CSRF check
    answered a POST without a token with its HTML 403 before them."""
    browser = Client(enforce_csrf_checks=True)
    for path in ("/api/openapi.json", "/api/docs"):
        for method in ("POST", "PUT", "DELETE", "PROPFIND"):
            response = browser.generic(method, path)
            assert response.status_code == 405, (method, path)
            assert response["Content-Type"] == "application/json"
            assert response["Allow"] == "GET, HEAD"
