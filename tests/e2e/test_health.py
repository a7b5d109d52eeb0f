"""Liveness, readiness, error bodies and the OpenAPI document."""


def test_health_ready_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "storage": "ok"}
    assert client.get("/docs/openapi.json").status_code == 200


def test_unknown_route_is_a_json_404(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
