"""Sentry against a local fake ingest endpoint: a forced error arrives once, scrubbed; client errors never."""

from __future__ import annotations

import time

import msgspec
import pytest

from iam_cluster.observability.logging import reset_logging
from iam_cluster.observability.sentry import close_sentry, init_sentry
from iam_cluster.queue import Jobs
from iam_cluster.settings import ObservabilitySettings
from iam_cluster.worker.loop import Worker
from tests.fixtures.worker import add_meeting, enqueue

PASSWORD = "hunter2-very-secret-password"
#: Looks like a JWT (what the redaction must catch), signed by nobody.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzb21lb25lIn0.c2lnbmF0dXJlLW5vdC1yZWFs"
COOKIE = "session=cookie-secret-value-123"


def sentry_settings(dsn: str) -> ObservabilitySettings:
    return ObservabilitySettings(sentry_dsn=dsn, environment="test", release="iam-cluster@test", log_format="json")


@pytest.fixture
def sentry_off():
    yield
    close_sentry()
    reset_logging()


def test_api_error_reaches_sentry_once_scrubbed(api_settings, fake_sentry, monkeypatch, sentry_off):
    from litestar.testing import TestClient

    from iam_cluster.api import auth
    from iam_cluster.api.app import create_app
    from iam_cluster.api.errors import is_client_error
    from iam_cluster.observability.asgi import setup_api_process

    settings = msgspec.structs.replace(api_settings, observability=sentry_settings(fake_sentry.dsn))
    setup_api_process(settings.observability, is_expected=is_client_error)  # before the app: Litestar's hook
    with TestClient(create_app(settings)) as client:
        account = {"email": "s@example.com", "password": PASSWORD}
        assert client.post("/api/v1/auth/register", json=account).status_code == 201
        wrong = client.post("/api/v1/auth/login", json={"email": "s@example.com", "password": "not it at all"})
        assert wrong.status_code == 401  # a client error: not reported

        def explode(*args, **kwargs):
            raise RuntimeError("password store unreachable")

        monkeypatch.setattr(auth, "verify_password", explode)
        r = client.post("/api/v1/auth/login", json={"email": "s@example.com", "password": PASSWORD},
                        headers={"Authorization": f"Bearer {TOKEN}", "Cookie": COOKIE, "X-Request-ID": "sentry-req-1"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal"
    events = fake_sentry.wait_for_events(1)
    time.sleep(1.0)  # a duplicate (the integration plus the error log line) would arrive by now
    events = fake_sentry.events()
    assert len(events) == 1, [e.get("exception") for e in events]
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert (event["environment"], event["release"]) == ("test", "iam-cluster@test")
    assert event["tags"]["service"] == "api" and event["tags"]["request_id"] == "sentry-req-1"
    request = event.get("request", {})
    assert "data" not in request and "cookies" not in request
    assert all(v == "[REDACTED]" for k, v in request.get("headers", {}).items()
               if k.lower() in ("authorization", "cookie"))
    raw = b"".join(fake_sentry.raw)
    for secret in (PASSWORD, TOKEN, "cookie-secret-value-123"):
        assert secret.encode() not in raw
    # No frame carries its local variables (the login handler's hold the password), whatever the
    # SDK calls the option (``include_local_variables`` before 3.0, ``data_collection`` after).
    frames = [f for v in event["exception"]["values"] for f in (v.get("stacktrace") or {}).get("frames", [])]
    assert frames and not any("vars" in f for f in frames)


class ExplodingRunner:
    def run(self, source, options, hook, name=None):
        leaked = TOKEN[:20] + "-".join(("secret", "bits"))  # built here: the source line shows no secret
        raise RuntimeError(f"decoder exploded; retry with token={leaked}")


def test_worker_error_reaches_sentry_once_with_the_job_id(conn, settings, storage, data_dir, fake_sentry,
                                                          sentry_off):
    settings = msgspec.structs.replace(settings, observability=sentry_settings(fake_sentry.dsn))
    init_sentry(settings.observability, "worker")
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / "spk1_snt1.wav").read_bytes())
    job = enqueue(conn, user_id, meeting_id, {})
    worker = Worker(settings, runner=ExplodingRunner(), storage=storage)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    assert Jobs(conn).get(job.id).status == "queued"  # retried later, as before
    fake_sentry.wait_for_events(1)
    time.sleep(1.0)
    events = fake_sentry.events()
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["service"] == "worker" and event["tags"]["job_id"] == str(job.id)
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    raw = b"".join(fake_sentry.raw)
    assert b"secret-bits" not in raw and TOKEN[:20].encode() not in raw
