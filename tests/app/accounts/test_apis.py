import pytest
from django.test import Client

from tests.app.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_token_for_right_credentials_authenticates_the_api(client):
    UserFactory(username="ann")
    response = client.post(
        "/api/auth/token",
        {"username": "ann", "password": "correct horse battery staple"},
        content_type="application/json",
    )
    assert response.status_code == 201
    token = response.json()["token"]
    tokens = client.get("/api/auth/tokens", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert tokens.status_code == 200


def test_wrong_password_is_a_json_401(client):
    UserFactory(username="ann")
    response = client.post(
        "/api/auth/token", {"username": "ann", "password": "nope"}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_unknown_token_is_a_json_401(client):
    response = client.get("/api/auth/tokens", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_tokens_are_stored_only_as_digests():
    from accounts.models import ApiToken
    from accounts.services import api_token_create

    token, _ = api_token_create(user=UserFactory())
    assert not ApiToken.objects.filter(digest=token).exists()
    assert ApiToken.objects.count() == 1


def test_nul_bytes_are_a_400_not_a_database_error(client):
    response = client.post(
        "/api/auth/token",
        {"username": "a\u0000b", "password": "x"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "username" in response.json()["error"]["fields"]


def test_an_undeclared_body_field_is_a_400_naming_it_and_issues_no_token(client):
    from accounts.models import ApiToken

    UserFactory(username="ann")
    body = {"username": "ann", "password": "correct horse battery staple", "scope": "admin"}
    response = client.post("/api/auth/token", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == ["scope"]
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_AUTHORIZATION": "Bearer expired-or-revoked"}],
    ids=["no credentials", "a token that is not valid"],
)
@pytest.mark.parametrize("cookie", [None, "", "made-up"], ids=["no cookie", "empty", "stale"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/orders",  # demo-shop
        "/api/reports",  # demo-shop
        "/api/tasks",
    ],
)
def test_a_write_without_valid_credentials_is_a_401_not_a_csrf_403(path, headers, cookie):
    client = Client(enforce_csrf_checks=True)
    if cookie is not None:
        client.cookies["sessionid"] = cookie  # a session cookie that logs no one in
    response = client.post(path, {}, content_type="application/json", **headers)
    assert response.status_code == 401, response.content


def test_a_session_write_without_its_csrf_token_is_still_a_403():
    user = UserFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.delete("/api/auth/tokens/1")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
