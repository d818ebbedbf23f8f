import json

import pytest

from shop.models import Product
from tests.app.shop.factories import ProductFactory

# Committed transactions: the replica alias is a second connection, which cannot see rows
# inside another connection's open test transaction.
pytestmark = pytest.mark.django_db(databases=["default", "replica"], transaction=True)


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/products", data=data, content_type=content_type)


def test_create_then_read(client):
    response = post(client, {"name": "Lamp", "price": "19.90", "stock": 2})
    assert response.status_code == 201
    product_id = response.json()["id"]
    detail = client.get(f"/api/products/{product_id}")
    assert detail.status_code == 200
    assert detail.json() == {
        "id": product_id,
        "name": "Lamp",
        "description": "",
        "price": "19.90",
        "stock": 2,
        "hot": False,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": "1.00", "stock": 1}, "name"),
        ({"name": "x", "price": "-1.00", "stock": 1}, "price"),
        ({"name": "x", "price": "abc", "stock": 1}, "price"),
        ({"name": "x", "price": "1.00", "stock": -5}, "stock"),
        ({"name": "x", "price": "1.00", "stock": "many"}, "stock"),
        ({"name": "x" * 201, "price": "1.00", "stock": 1}, "name"),
    ],
)
def test_invalid_fields_are_named_and_nothing_is_written(client, body, field):
    response = post(client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert Product.objects.using("default").count() == 0


@pytest.mark.parametrize("body", ['{"name": ', "[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_a_400(client, body):
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert Product.objects.using("default").count() == 0


def test_wrong_content_type_is_a_415(client):
    response = post(client, "name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_unknown_product_is_a_json_404(client):
    ProductFactory()
    response = client.get("/api/products/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(client):
    response = client.delete("/api/products/1")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"
