import json

import pytest


def test_unknown_path_is_a_json_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == {"code": "not_found", "message": "Nothing at /no/such/page."}


def test_unknown_host_is_a_json_400(client):
    response = client.get("/api/products/1", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.urls("tests.app.core.database_error_urls")
@pytest.mark.django_db(transaction=True)
def test_a_database_error_outside_the_api_is_the_apis_json_503(client):
    # The real server cancels the query: a view outside the API (the admin, for one) answers
    # what the API would, not a 500 page.
    response = client.get("/statement-timeout")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "query_timeout"
    assert response["Retry-After"] == "5"


@pytest.mark.urls("tests.app.core.database_error_urls")
@pytest.mark.django_db(transaction=True)
def test_a_programming_error_outside_the_api_stays_a_500(client):
    # Only errors of the database's state are 503s; a bug is not one to retry.
    client.raise_request_exception = False
    response = client.get("/unknown-table")
    assert response.status_code == 500


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/api/auth/token", "POST"),
        ("put", "/api/auth/token", "POST"),
        ("head", "/api/tasks", "POST"),
        ("options", "/api/tasks", "POST"),
        ("post", "/api/tasks/1", "GET, HEAD"),
        ("delete", "/api/products", "GET, HEAD, POST"),  # demo-shop
    ],
)
def test_a_method_the_path_does_not_serve_is_a_json_405_naming_the_ones_it_does(
    client, method, path, allowed
):
    # django-ninja answers these with an HTML 405 of its own, before any API handler runs.
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == allowed
    if method == "head":
        return  # the body is never sent
    assert json.loads(response.content)["error"] == {
        "code": "method_not_allowed",
        "message": f"This path serves only {allowed}.",
    }


@pytest.mark.parametrize("path", ["/api/tasks/x", "/api/auth/tokens"])
def test_head_is_answered_as_get_would_be_without_the_body(client, path):
    """HTTP requires HEAD wherever GET is served; django-ninja refuses it with a 405."""
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code != 405
    assert head["Content-Type"] == got["Content-Type"] == "application/json"
    assert head.content == b""
