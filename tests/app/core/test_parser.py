"""A request body is JSON, labelled as JSON: anything else is refused, naming why, before the
view runs (POST /api/auth/token here: it writes a token when the body is right)."""

import json

import pytest

from accounts.models import ApiToken
from tests.app.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

GOOD = '{"username": "ann", "password": "correct horse battery staple"}'


def login(client, body, content_type="application/json"):
    data = body.encode() if isinstance(body, str) else body
    return client.generic("POST", "/api/auth/token", data, content_type=content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/+json",
        "application/json-seq",
        "text/json",
    ],
)
def test_a_body_not_labelled_json_is_a_415_naming_its_type_and_changes_nothing(
    client, content_type
):
    UserFactory(username="ann")
    response = login(client, GOOD, content_type)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]
    assert (content_type.split(";")[0] or "not labelled") in error["message"]
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("charset", ["iso-8859-1", "utf-16"])
def test_json_said_to_be_in_another_charset_than_utf8_is_a_415(client, charset):
    UserFactory(username="ann")
    response = login(client, GOOD, f"application/json; charset={charset}")
    assert response.status_code == 415, response.text
    assert f"this one said '{charset}'" in response.json()["error"]["message"]
    assert not ApiToken.objects.exists()


def test_what_the_client_sent_is_named_in_a_refusal_but_not_echoed_at_length(client):
    long_type = "text/" + "x" * 10_000
    long_name = "n" * 10_000
    typed = login(client, GOOD, long_type).json()["error"]["message"]
    twice = login(client, f'{{"{long_name}": 1, "{long_name}": 2}}').json()["error"]["message"]
    assert "text/xxx" in typed
    assert "'nnn" in twice
    assert len(typed) < 200
    assert len(twice) < 200


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/x+json"]
)
def test_json_and_its_suffix_types_are_read(client, content_type):
    UserFactory(username="ann")
    assert login(client, GOOD, content_type).status_code == 201


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"username": "ann", "username": "bob", "password": "x"}', "'username' twice"),
        ('{"username": "ann", "password": ', "line 1 column 33"),
        ("\ufeff" + GOOD, "byte order mark"),
        (b'{"username": "\xff"}', "not UTF-8"),
        ('{"username": [' + "[" * 100_000 + "]" * 100_000 + "]}", "too deeply"),
        ('{"username": ' + "9" * 5_000 + "}", "a number of more than 4300 digits."),
        ('{"username": "a\x01"}', "Invalid control character at line 1 column 16."),
    ],
    ids=["name-twice", "truncated", "bom", "latin-1", "deep", "long-number", "control"],
)
def test_a_malformed_body_is_a_400_saying_what_is_wrong_and_changes_nothing(client, body, says):
    UserFactory(username="ann")
    response = login(client, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "malformed_json"
    assert says in error["message"]
    assert not ApiToken.objects.exists()


def test_the_schema_lists_the_415_wherever_a_body_is_read(client):
    schema = client.get("/api/openapi.json").json()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    with_body = [op for op in operations if "requestBody" in op]
    assert with_body
    assert all("415" in op["responses"] for op in with_body), json.dumps(with_body)[:500]
    assert not any("415" in op["responses"] for op in operations if "requestBody" not in op)
