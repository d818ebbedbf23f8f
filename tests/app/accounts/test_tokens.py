"""API tokens end: at their lifetime, at a password change, or when their user revokes them;
a user sees and revokes only their own."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from tests.app.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_hashes(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def login(client, username: str) -> dict:
    response = client.post(
        "/api/auth/token",
        {"username": username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_token_has_a_lifetime_and_is_refused_past_it(client, settings):
    UserFactory(username="ann")
    settings.API_TOKEN_LIFETIME_SECONDS = 3600
    made = login(client, "ann")
    expires = timezone.datetime.fromisoformat(made["expires_at"])
    assert timedelta(minutes=59) < expires - timezone.now() <= timedelta(hours=1)
    assert client.get("/api/auth/tokens", **bearer(made["token"])).status_code == 200

    ApiToken.objects.filter(pk=made["id"]).update(expires_at=timezone.now())
    refused = client.get("/api/auth/tokens", **bearer(made["token"]))
    assert refused.status_code == 401


def test_a_password_change_ends_every_token(client):
    ann = UserFactory(username="ann")
    first, second = login(client, "ann"), login(client, "ann")
    ann.set_password("a new and different passphrase")
    ann.save()
    for made in (first, second):
        assert client.get("/api/auth/tokens", **bearer(made["token"])).status_code == 401


def test_a_user_lists_and_revokes_only_their_own_tokens(client):
    UserFactory(username="ann")
    UserFactory(username="bob")
    old, current = login(client, "ann"), login(client, "ann")
    bobs = login(client, "bob")

    listed = client.get("/api/auth/tokens", **bearer(current["token"]))
    assert listed.status_code == 200
    assert [(t["id"], t["current"]) for t in listed.json()] == [
        (current["id"], True),
        (old["id"], False),
    ]
    assert "token" not in listed.json()[0]

    # Bob's token id, asked by Ann: as missing as one that never existed.
    other = client.delete(f"/api/auth/tokens/{bobs['id']}", **bearer(current["token"]))
    assert other.status_code == 404
    assert client.get("/api/auth/tokens", **bearer(bobs["token"])).status_code == 200

    revoked = client.delete(f"/api/auth/tokens/{old['id']}", **bearer(current["token"]))
    assert revoked.status_code == 204
    assert client.get("/api/auth/tokens", **bearer(old["token"])).status_code == 401
    assert client.get("/api/auth/tokens", **bearer(current["token"])).status_code == 200


def test_a_login_clears_the_users_expired_tokens():
    from accounts.services import api_token_create

    ann = UserFactory(username="ann")
    api_token_create(user=ann)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    api_token_create(user=ann)
    assert ApiToken.objects.count() == 1
