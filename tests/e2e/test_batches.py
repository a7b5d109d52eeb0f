"""Batch archives over HTTP: upload a zip, a real worker runs each recording's job, status, items,
results bundle, billing exactly once, the batch event; quota up front, unsafe archives, cancel."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from decimal import Decimal

import msgspec
import psycopg
import pytest
import redis

from iam_cluster import events
from iam_cluster.worker.loop import Worker
from tests.fixtures.audio import is_transcript_of


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _archive(harvard) -> bytes:
    return _zip({"a.wav": harvard[0].read_bytes(), "calls/day1/b.wav": harvard[1].read_bytes(),
                 "calls/c.wav": harvard[2].read_bytes(), "notes.txt": b"not audio", "empty.wav": b""})


def _subscribe(settings, user_id):
    client = redis.Redis.from_url(settings.redis.url)
    sub = client.pubsub()
    sub.subscribe(events.channel(settings.redis.key_prefix, user_id))
    sub.get_message(timeout=1.0)  # the subscription's confirmation
    return client, sub


def _events(sub, kind: str) -> list[dict]:
    got = []
    while (m := sub.get_message(timeout=0.5)) is not None:
        if m["type"] == "message":
            event = json.loads(m["data"])
            if event["type"] == kind:
                got.append(event)
    return got


def _subscribe_webhooks(settings, user_id) -> None:
    """An endpoint of the user's for ``batch.completed`` only (never called: the outbox rows are checked)."""
    with psycopg.connect(settings.database.url, autocommit=True) as c:
        c.execute("INSERT INTO webhook_endpoints (user_id, url, events) VALUES (%s, %s, %s)",
                  [user_id, "https://hooks.example.com/iam", ["batch.completed"]])


def _batch_deliveries(settings, user_id) -> list[dict]:
    with psycopg.connect(settings.database.url) as c:
        rows = c.execute("SELECT event, payload FROM webhook_deliveries WHERE user_id = %s", [user_id]).fetchall()
    return [{"event": e, **p} for e, p in rows]


def test_batch_flow_with_a_real_worker(client, api_settings, runner, make_user, harvard):
    user_id, _, _, headers = make_user()
    _subscribe_webhooks(api_settings, user_id)
    r = client.post("/api/v1/batches?filename=calls.zip", content=_archive(harvard), headers=headers)
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["status"] == "processing" and batch["total"] == 5
    assert batch["counts"] == {"queued": 3, "processing": 0, "completed": 0, "failed": 2, "cancelled": 0}
    url = f"/api/v1/batches/{batch['id']}"
    redis_client, sub = _subscribe(api_settings, user_id)
    try:
        worker = Worker(api_settings, runner=runner)
        while worker.run_once():
            pass
        assert len(_events(sub, "batch_completed")) == 1
    finally:
        sub.close()
        redis_client.close()

    done = client.get(url, headers=headers).json()
    assert done["status"] == "completed" and done["finished_at"] is not None
    assert done["counts"] == {"queued": 0, "processing": 0, "completed": 3, "failed": 2, "cancelled": 0}
    # One batch.completed webhook delivery, queued by the transaction that finished the batch.
    (delivery,) = _batch_deliveries(api_settings, user_id)
    assert delivery["event"] == delivery["type"] == "batch.completed"
    data = delivery["data"]
    assert data["batch"]["id"] == batch["id"] and data["batch"]["status"] == "completed"
    assert data["batch"]["total"] == 5 and data["batch"]["counts"] == done["counts"]
    assert data["batch"]["finished_at"] is not None and data["links"]["results"] == f"{url}/results"
    items = {i["key"]: i for i in client.get(f"{url}/items", headers=headers).json()}
    assert {k: i["error_code"] or i["status"] for k, i in items.items()} == {
        "a.wav": "completed", "calls/day1/b.wav": "completed", "calls/c.wav": "completed",
        "notes.txt": "unsupported_media", "empty.wav": "empty_media"}
    text = client.get(items["calls/day1/b.wav"]["transcript_url"].replace("json", "txt"), headers=headers).text
    assert is_transcript_of(text, harvard[1]), text

    bundle = client.get(f"{url}/results", headers=headers)
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as zf:
        names = set(zf.namelist())
        assert names == {"a.json", "a.txt", "calls/day1/b.json", "calls/day1/b.txt", "calls/c.json", "calls/c.txt",
                         "manifest.jsonl"}
        assert is_transcript_of(zf.read("calls/c.txt").decode(), harvard[2])
        lines = [msgspec.json.decode(x) for x in zf.read("manifest.jsonl").splitlines()]
        assert len(lines) == 5

    with psycopg.connect(api_settings.database.url) as c:
        billed = c.execute("SELECT count(*), count(DISTINCT job_id) FROM usage_records WHERE user_id = %s",
                           [user_id]).fetchone()
        held = c.execute("SELECT count(*) FROM quota_reservations WHERE user_id = %s "
                         "AND settled_at IS NULL AND released_at IS NULL", [user_id]).fetchone()
    assert billed == (3, 3) and held == (0,)
    # Another user sees nothing of it.
    other = make_user()[3]
    assert client.get(url, headers=other).status_code == 404
    assert client.get(f"{url}/results", headers=other).status_code == 404


def test_batch_quota_is_checked_up_front(client, api_settings, make_user, harvard):
    user_id, _, _, headers = make_user()
    with psycopg.connect(api_settings.database.url, autocommit=True) as c:  # 59.8 of the free 60 minutes used
        c.execute("INSERT INTO usage_records (user_id, job_id, audio_seconds, billable_minutes, model, cost) "
                  "VALUES (%s, %s, %s, %s, 'tiny.en', 0)", [user_id, uuid.uuid4(), 59.8 * 60, Decimal("59.8")])
    r = client.post("/api/v1/batches?filename=calls.zip", content=_archive(harvard), headers=headers)
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert error["code"] == "quota_exceeded" and "short by 0.1 minutes" in error["message"]  # 3 clips of 0.1
    with psycopg.connect(api_settings.database.url) as c:
        assert c.execute("SELECT count(*) FROM meetings WHERE user_id = %s", [user_id]).fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM jobs WHERE user_id = %s", [user_id]).fetchone() == (0,)
    stored = [p for p in (api_settings.storage.root / "users").rglob("*") if p.is_file()]
    assert stored == []


@pytest.mark.parametrize("name", ["../../evil.wav", "/abs/evil.wav"])
def test_unsafe_archive_is_refused(client, make_user, harvard, name):
    headers = make_user()[3]
    r = client.post("/api/v1/batches?filename=x.zip", content=_zip({"ok.wav": harvard[0].read_bytes(), name: b"x"}),
                    headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsafe_member"
    r = client.post("/api/v1/batches?filename=x.zip", content=b"not an archive at all", headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_archive"


def test_cancel_a_batch(client, api_settings, make_user, harvard):
    user_id, _, _, headers = make_user()
    _subscribe_webhooks(api_settings, user_id)
    batch = client.post("/api/v1/batches", files={"file": ("calls.zip", _archive(harvard))}, headers=headers).json()
    redis_client, sub = _subscribe(api_settings, user_id)
    try:
        r = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["counts"]["cancelled"] == 3
        assert len(_events(sub, "batch_completed")) == 1
    finally:
        sub.close()
        redis_client.close()
    with psycopg.connect(api_settings.database.url) as c:
        assert c.execute("SELECT count(*) FROM quota_reservations WHERE user_id = %s "
                         "AND settled_at IS NULL AND released_at IS NULL", [user_id]).fetchone() == (0,)
    (delivery,) = _batch_deliveries(api_settings, user_id)
    assert delivery["data"]["batch"]["status"] == "cancelled"
    assert delivery["data"]["batch"]["counts"]["cancelled"] == 3


def test_a_batch_with_nothing_to_run_is_finished_at_once(client, api_settings, make_user):
    user_id, _, _, headers = make_user()
    _subscribe_webhooks(api_settings, user_id)
    r = client.post("/api/v1/batches?filename=x.zip", content=_zip({"notes.txt": b"not audio", "empty.wav": b""}),
                    headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "completed" and r.json()["finished_at"] is not None
    assert r.json()["counts"]["failed"] == 2
    (delivery,) = _batch_deliveries(api_settings, user_id)
    assert delivery["data"]["batch"]["counts"]["failed"] == 2


@pytest.fixture
def s3_intake(api_settings, moto_endpoint):
    """Settings whose batch API may read ``s3://<bucket>/intake/{user_id}/`` on moto; yields (settings, s3, bucket)."""
    import boto3

    from tests.fixtures.s3 import CREDENTIALS

    bucket = f"intake-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=CREDENTIALS["region"],
                      aws_access_key_id=CREDENTIALS["access_key_id"],
                      aws_secret_access_key=CREDENTIALS["secret_access_key"])
    s3.create_bucket(Bucket=bucket)
    storage = msgspec.structs.replace(api_settings.storage, endpoint_url=moto_endpoint, **CREDENTIALS,
                                      batch_s3_prefixes=(f"s3://{bucket}/intake/{{user_id}}/",))
    return msgspec.structs.replace(api_settings, storage=storage), s3, bucket


def test_batch_from_an_allowed_s3_prefix(s3_intake, runner, make_user, harvard):
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    settings, s3, bucket = s3_intake
    user_id, _, _, headers = make_user()
    other_id = make_user()[0]
    _subscribe_webhooks(settings, user_id)
    mine = f"intake/{user_id}/june"
    s3.put_object(Bucket=bucket, Key=f"{mine}/a.wav", Body=harvard[0].read_bytes())
    s3.put_object(Bucket=bucket, Key=f"{mine}/day2/b.wav", Body=harvard[1].read_bytes())
    s3.put_object(Bucket=bucket, Key=f"{mine}/bad.wav", Body=b"RIFF\x00\x00")
    s3.put_object(Bucket=bucket, Key=f"intake/{other_id}/secret.wav", Body=harvard[2].read_bytes())
    with TestClient(create_app(settings)) as client:
        def post(body):
            return client.post("/api/v1/batches", json=body, headers=headers)

        r = post({"s3_prefix": f"s3://{bucket}/intake/{user_id}/june/"})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["total"] == 3 and batch["name"] == f"s3://{bucket}/{mine}/"
        assert batch["counts"] == {"queued": 2, "processing": 0, "completed": 0, "failed": 1, "cancelled": 0}
        # Another user's folder, the bucket's root, a sibling, a path trick, not S3, not JSON, no objects.
        for body, status, code in [
            ({"s3_prefix": f"s3://{bucket}/intake/{other_id}/"}, 403, "forbidden"),
            ({"s3_prefix": f"s3://{bucket}/"}, 403, "forbidden"),
            ({"s3_prefix": f"s3://{bucket}/intake/{user_id}x/"}, 403, "forbidden"),
            ({"s3_prefix": f"s3://{bucket}/intake/{user_id}/../{other_id}/"}, 422, "invalid_source"),
            ({"s3_prefix": "file:///etc/"}, 422, "invalid_source"),
            ({"prefix": f"s3://{bucket}/intake/{user_id}/"}, 422, "invalid_source"),
            ({"s3_prefix": f"s3://{bucket}/intake/{user_id}/nothing/"}, 422, "bad_archive"),
        ]:
            r = post(body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
        r = client.post("/api/v1/batches", content=b'{"s3_prefix": "' + b"x" * 10_000 + b'"}',
                        headers={**headers, "Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")

        worker = Worker(settings, runner=runner)
        while worker.run_once():
            pass
        url = f"/api/v1/batches/{batch['id']}"
        done = client.get(url, headers=headers).json()
        assert done["status"] == "completed"
        assert done["counts"] == {"queued": 0, "processing": 0, "completed": 2, "failed": 1, "cancelled": 0}
        items = {i["key"]: i for i in client.get(f"{url}/items", headers=headers).json()}
        assert {k: i["error_code"] or i["status"] for k, i in items.items()} == {
            "a.wav": "completed", "day2/b.wav": "completed", "bad.wav": "truncated_media"}
        text = client.get(items["day2/b.wav"]["transcript_url"].replace("json", "txt"), headers=headers).text
        assert is_transcript_of(text, harvard[1]), text
    (delivery,) = _batch_deliveries(settings, user_id)
    assert delivery["data"]["batch"]["counts"]["completed"] == 2
    # The objects were copied into the API's own storage: the source prefix is left as it was.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert len(keys) == 4
