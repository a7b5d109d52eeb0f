"""The OpenAPI document against the API it describes.

The document itself: the real error body on every route, each route's statuses, upload bodies, the
Bearer scheme on authenticated routes, and ``/docs`` served with no file from elsewhere. Then
schemathesis (property-based, bounded) over every operation of a live API, as a signed-in user (an
access token) and as an API key: no server error, and every answer's status, content type, headers
and body as documented.

Every check runs but two that judge requests rather than answers: ``positive_data_acceptance`` (a
request the schema allows must succeed) and ``negative_data_rejection`` (one it forbids must fail).
Rules no schema states refuse schema-valid requests by design (a guessable password, 422; an opaque
cursor that does not decode, 400; the minutes of the plan spent, 402; a file that is not audio, 415;
exactly one of two recipient fields, 400), and decoding is lenient by design (``"3"`` for 3, a Unix
time for a date-time: Litestar decodes with msgspec's ``strict=False``).

Left out of the fuzzing: ``POST /api/v1/billing/webhook`` (Stripe's events are accepted only with a
valid ``Stripe-Signature`` over the exact body, which a generated request cannot have: tests/e2e/
test_stripe.py drives it with signed events) and the WebSocket ``/api/v2/messages/ws`` (not HTTP, and
not in an OpenAPI document: tests/e2e/test_ws.py).
"""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from tests.fixtures.api import serving
from tests.fixtures.db import _create, _drop, database_url_for

#: Examples per operation and credential: ~50 operations x 2 credentials x this, on 2 cores.
MAX_EXAMPLES = 8
#: Checks left out (see the module's docstring).
REQUEST_JUDGING = [positive_data_acceptance, negative_data_rejection]
#: Operations a generated request cannot exercise (see the module's docstring).
UNFUZZABLE = [("POST", "/api/v1/billing/webhook")]


@pytest.fixture(scope="module")
def fake_stripe_server():
    """The fake Stripe (tests/fixtures/fake_stripe.py) for the whole module."""
    import threading
    from http.server import ThreadingHTTPServer

    from tests.fixtures.fake_stripe import FakeStripe, _handler

    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fuzz_api(db_template, fake_stripe_server):
    """A live API on its own database (Stripe: the fake), with budgets no fuzzing run reaches, and two
    credentials: ``(url, access-token headers, API-key headers)``."""
    import psycopg

    from iam_cluster.api.security import create_access_token, hash_password
    from iam_cluster.settings import load_settings

    name = f"iam_test_fuzz_{uuid.uuid4().hex[:12]}"
    _create(name, db_template)
    base = load_settings({})
    with tempfile.TemporaryDirectory() as media:
        api = msgspec.structs.replace(base.api, rate_limit_per_ip=1_000_000, rate_limit_per_user=1_000_000,
                                      auth_rate_limit_per_ip=1_000_000)
        settings_ = msgspec.structs.replace(
            base, api=api,
            database=msgspec.structs.replace(base.database, url=database_url_for(name), pool_min=1, pool_max=4),
            redis=msgspec.structs.replace(base.redis, key_prefix=f"test:{uuid.uuid4().hex[:12]}:"),
            storage=msgspec.structs.replace(base.storage, backend="local", root=Path(media),
                                            max_upload_bytes=2 * 1024 * 1024),
            auth=msgspec.structs.replace(base.auth, jwt_secret_key="test-secret-" + uuid.uuid4().hex),
            billing=msgspec.structs.replace(base.billing, secret_key="sk_test_fake", webhook_secret="whsec_fuzz",
                                            api_base=fake_stripe_server,
                                            price={"pro": "price_pro_test", "enterprise": "price_ent_test"}))
        try:
            with psycopg.connect(settings_.database.url, autocommit=True) as conn:
                (user_id,) = conn.execute(
                    "INSERT INTO users (email, password_hash) VALUES (%s, %s) RETURNING id",
                    ("fuzz@example.com", hash_password("correct horse battery"))).fetchone()
            token = {"Authorization": f"Bearer {create_access_token(user_id, 'fuzz@example.com', settings_.auth)}"}
            with serving(settings_, None) as url:
                r = httpx.post(f"{url}/api/v1/api-keys", headers=token,
                               json={"name": "fuzz", "scopes": ["transcribe", "read", "billing"]})
                assert r.status_code == 201, r.text
                yield url, token, {"Authorization": f"Bearer {r.json()['key']}"}
        finally:
            _drop(name)


def _document() -> dict:
    """The document the API serves at /docs/openapi.json, built from the app (no server needed), so
    that each operation is a test of its own."""
    from litestar.serialization import encode_json

    from iam_cluster.api.app import create_app
    from iam_cluster.api.openapi import document
    from iam_cluster.settings import load_settings

    base = load_settings({})
    settings_ = msgspec.structs.replace(
        base, database=msgspec.structs.replace(base.database, url="postgresql://unused/unused"),
        auth=msgspec.structs.replace(base.auth, jwt_secret_key="x" * 40))
    return msgspec.json.decode(encode_json(document(create_app(settings_)).to_schema()))


schema = schemathesis.openapi.from_dict(_document())
for _method, _path in UNFUZZABLE:
    schema = schema.exclude(method=_method, path=_path)
_fuzz = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@schema.parametrize()
@_fuzz
def test_every_operation_as_a_user(case, fuzz_api):
    case.call_and_validate(base_url=fuzz_api[0], headers=fuzz_api[1], excluded_checks=REQUEST_JUDGING)


@pytest.mark.slow
@schema.parametrize()
@_fuzz
def test_every_operation_with_an_api_key(case, fuzz_api):
    case.call_and_validate(base_url=fuzz_api[0], headers=fuzz_api[2], excluded_checks=REQUEST_JUDGING)


# --- the document itself ---------------------------------------------------------------------------

@pytest.fixture
def document(client) -> dict:
    r = client.get("/docs/openapi.json")
    assert r.status_code == 200, r.text
    return r.json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                yield method.upper(), path, op


def test_every_error_is_the_real_error_body(document):
    assert set(document["components"]["schemas"]["Error"]["properties"]) >= {"error"}
    for method, path, op in _operations(document):
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        assert "400" in errors, (method, path)
        for status, response in errors.items():
            if (path, status) == ("/ready", "503"):  # readiness answers its checks, not an error
                continue
            schema_ = response["content"]["application/json"]["schema"]
            expected = "#/components/schemas/OpenAIError" if path.startswith("/v1/") else "#/components/schemas/Error"
            assert schema_ == {"$ref": expected}, (method, path, status, schema_)
            assert response["description"], (method, path, status)
        if path.startswith(("/api/", "/v1/")):
            assert {"429", "503"} <= set(errors), (method, path)
            assert "Retry-After" in errors["429"]["headers"]
        if "{" in path:
            assert "404" in errors, (method, path)
        assert op.get("description"), (method, path)


def test_authenticated_routes_declare_bearer(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {**schemes["BearerAuth"], "type": "http", "scheme": "bearer"}
    public = {("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
              ("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/billing/plans"), ("POST", "/api/v1/billing/webhook"),
              ("GET", "/health"), ("GET", "/ready")}
    for method, path, op in _operations(document):
        if (method, path) in public:
            assert "security" not in op, (method, path)
            continue
        assert {"BearerAuth": []} in op["security"], (method, path)
        assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_upload_bodies_and_statuses(document):
    upload = document["paths"]["/api/v1/meetings/{meeting_id}/upload"]["post"]
    content = upload["requestBody"]["content"]
    assert content["application/octet-stream"]["schema"]["format"] == "binary"
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert {"408", "409", "413", "415", "422"} <= set(upload["responses"])
    openai = document["paths"]["/v1/audio/transcriptions"]["post"]
    form = openai["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"file", "model", "prompt", "response_format"} <= set(form["properties"])
    assert {"413", "415", "422", "429"} <= set(openai["responses"])
    assert set(openai["responses"]["200"]["content"]) == {"application/json", "text/plain", "text/event-stream"}


def test_docs_load_nothing_from_elsewhere(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls and all(u.startswith("/docs/assets/") for u in urls), urls
    assert "://" not in page.text.split("<body>")[0]
    for u in urls:
        asset = client.get(u)
        assert asset.status_code == 200 and len(asset.content) > 1000, u
    assert client.get("/docs/openapi.yaml").status_code == 200
