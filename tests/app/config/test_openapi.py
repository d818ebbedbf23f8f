"""The OpenAPI schema lists every status an operation can answer (clients and the fuzz test read
it): an authenticated operation can answer 401, and an unsafe one that accepts the session also
403 (Django's CSRF check fails it when the token is missing), and Nginx's rate limits can
answer any unsafe one 429."""

from typing import Any

import pytest

from config.api import api

UNSAFE = {"post", "put", "patch", "delete"}


def _schema() -> dict[str, Any]:
    return dict(api.get_openapi_schema())


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in _schema()["paths"].items()
        for method, operation in methods.items()
    ]


def _cookie_schemes() -> set[str]:
    schemes = _schema()["components"]["securitySchemes"]
    return {name for name, s in schemes.items() if s.get("in") == "cookie"}


def test_the_session_is_a_cookie_scheme_in_the_schema():
    # Otherwise the checks below would pass for want of anything to check.
    assert _cookie_schemes()


@pytest.mark.parametrize(("method", "path", "operation"), _operations())
def test_every_status_an_operation_can_answer_is_documented(method, path, operation):
    security = operation.get("security") or []
    documented = {str(status) for status in operation["responses"]}
    if security:
        assert "401" in documented, f"{method.upper()} {path}: 401 (no or bad credentials)"
    session = any(name in _cookie_schemes() for entry in security for name in entry)
    if session and method in UNSAFE:
        assert "403" in documented, f"{method.upper()} {path}: 403 (session without CSRF token)"
    if method in UNSAFE:
        # Nginx's writes zone (nginx/nginx.conf) limits every unsafe method before Django.
        assert "429" in documented, f"{method.upper()} {path}: 429 (Nginx's rate limit)"


def _bodies() -> list[tuple[str, str, dict[str, Any]]]:
    schemas = _schema()["components"]["schemas"]
    found = []
    for method, path, operation in _operations():
        content = operation.get("requestBody", {}).get("content", {})
        for media in content.values():
            ref = media["schema"].get("$ref", "")
            found.append((method, path, schemas[ref.rsplit("/", 1)[1]]))
    return found


def test_every_request_body_allows_no_property_it_does_not_declare():
    """As the API answers one (tests/app/accounts/test_apis.py, ..._undeclared_...): a 400
    naming it, never the request carried out without the field the client meant."""
    bodies = _bodies()
    assert bodies  # otherwise the check below would pass for want of anything to check
    schemas = _schema()["components"]["schemas"]
    for method, path, schema in bodies:
        assert schema.get("additionalProperties") is False, f"{method.upper()} {path}"
        for field in schema["properties"].values():
            items = field.get("items", {})
            if "$ref" in items:  # a list of objects: each one closed too
                nested = schemas[items["$ref"].rsplit("/", 1)[1]]
                assert nested.get("additionalProperties") is False, f"{method.upper()} {path}"


# demo-shop: begin
def test_orders_and_reports_document_the_csrf_403():
    paths = _schema()["paths"]
    for path in ("/api/orders", "/api/reports"):
        assert paths[path]["post"]["responses"][403]["content"]["application/json"]


# demo-shop: end
