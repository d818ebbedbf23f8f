def test_unknown_path_is_a_json_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == {"code": "not_found", "message": "Nothing at /no/such/page."}


def test_unknown_host_is_a_json_400(client):
    response = client.get("/api/products/1", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
