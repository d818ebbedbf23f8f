"""URL names: the metrics' view label and reverse() name a route, never one of its operations."""

from collections import defaultdict

from django.urls import URLPattern, URLResolver, get_resolver, resolve


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
