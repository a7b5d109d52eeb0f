"""Liveness, readiness, error bodies and the OpenAPI document."""


def test_health_ready_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "storage": "ok"}
    assert client.get("/docs/openapi.json").status_code == 200


def test_unknown_route_is_a_json_404(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_ready_reports_unusable_storage(api_settings, tmp_path):
    import msgspec
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the media folder should be")
    storage = msgspec.structs.replace(api_settings.storage, root=blocked)
    settings = msgspec.structs.replace(api_settings, storage=storage)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert client.get("/health").status_code == 200  # liveness does not depend on storage
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "storage": "error: StorageError"}
