import json


def test_task_create_names_missing_fields(client):
    response = client.post("/api/tasks", data=json.dumps({"a": 1}), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"].keys() == {"b"}


def test_task_create_rejects_non_integers(client):
    body = json.dumps({"a": "one", "b": 2})
    response = client.post("/api/tasks", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "a" in response.json()["error"]["fields"]


def test_task_detail_with_a_malformed_id_is_a_404(client):
    response = client.get("/api/tasks/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
