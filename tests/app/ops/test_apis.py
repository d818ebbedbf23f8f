import json
import uuid

import pytest

from tests.app.accounts.factories import UserFactory, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return bearer(UserFactory(is_staff=True))


def post_task(client, body, **headers):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/tasks", data=data, content_type="application/json", **headers)


def test_task_create_names_missing_fields(client, staff):
    response = post_task(client, {"a": 1}, **staff)
    assert response.status_code == 400
    assert response.json()["error"]["fields"].keys() == {"b"}


def test_task_create_rejects_non_integers(client, staff):
    response = post_task(client, {"a": "one", "b": 2}, **staff)
    assert response.status_code == 400
    assert "a" in response.json()["error"]["fields"]


def test_task_create_without_credentials_is_a_401_and_enqueues_nothing(client, celery_broker):
    # The default queue also carries reports.sweep: anonymous work there would delay it.
    response = post_task(client, {"a": 1, "b": 2})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert celery_broker.llen("default") == 0


def test_task_create_by_a_customer_is_a_403_and_enqueues_nothing(client, celery_broker):
    response = post_task(client, {"a": 1, "b": 2}, **bearer(UserFactory()))
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "forbidden", "message": "Staff only."}
    assert celery_broker.llen("default") == 0


def test_task_detail_with_a_malformed_id_is_a_404(client, staff):
    response = client.get("/api/tasks/not-a-uuid", **staff)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_task_detail_takes_staff(client):
    path = f"/api/tasks/{uuid.uuid4()}"
    anonymous = client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    customer = client.get(path, **bearer(UserFactory()))
    assert customer.status_code == 403
    assert customer.json()["error"] == {"code": "forbidden", "message": "Staff only."}


@pytest.fixture
def queue_dropping(broker_dropping):
    """Broker and result backend both on a server that drops every connection."""
    from config.celery import app

    def use_backend(url: str) -> None:
        app.conf.result_backend = url
        app._backend_cache = None  # the backend object is made once per app: make it again
        app._local.__dict__.pop("backend", None)

    previous = app.conf.result_backend
    use_backend(f"redis://:x@127.0.0.1:{broker_dropping.port}/1")
    try:
        yield broker_dropping
    finally:
        use_backend(previous)


def test_task_create_while_the_queue_is_down_is_a_503_after_one_try(client, staff, queue_dropping):
    response = post_task(client, {"a": 1, "b": 2}, **staff)
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "queue_unavailable"
    assert response["Retry-After"] == "5"
    # One try each for the result subscription and the publish, not Celery's ~20 retries.
    assert queue_dropping.connections <= 2
