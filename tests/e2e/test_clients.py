"""What machine clients use: API keys and their scopes, uploads with curl -F or a raw body, and job
control (list, cancel with the reservation released, retry)."""

from __future__ import annotations

import subprocess
import uuid

import httpx
import psycopg


def test_api_keys_shown_once_scoped_and_revocable(live_api, api_key, data_dir):
    _, headers, create = api_key
    key = create(["read"])
    auth = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(f"{live_api}/api/v1/api-keys", headers=headers).json()
    assert [k["prefix"] for k in listed] == [key[:12]] and "key" not in listed[0]  # never shown again
    assert httpx.get(f"{live_api}/api/v1/meetings", headers=auth).status_code == 200  # read: yes
    r = httpx.post(f"{live_api}/api/v1/meetings", json={"title": "x"}, headers=auth)
    assert r.status_code == 403 and "transcribe" in r.json()["error"]["message"]  # act: no
    assert httpx.get(f"{live_api}/api/v1/billing/usage", headers=auth).status_code == 403  # billing: no
    assert httpx.get(f"{live_api}/api/v1/api-keys", headers=auth).status_code == 403  # keys: tokens only
    used = httpx.get(f"{live_api}/api/v1/api-keys", headers=headers).json()[0]
    assert used["last_used_at"] is not None
    assert httpx.delete(f"{live_api}/api/v1/api-keys/{used['id']}", headers=headers).json()["revoked_at"]
    assert httpx.get(f"{live_api}/api/v1/meetings", headers=auth).status_code == 401
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert httpx.get(f"{live_api}/api/v1/meetings", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_curl_form_and_raw_uploads(live_api, api_key, data_dir, api_settings):
    _, _, create = api_key
    auth = {"Authorization": f"Bearer {create()}"}
    clip = data_dir / "spk1_snt2.wav"
    meeting = httpx.post(f"{live_api}/api/v1/meetings", json={"title": "curl"}, headers=auth).json()
    url = f"{live_api}/api/v1/meetings/{meeting['id']}/upload"
    out = subprocess.run(["curl", "-sS", "-H", auth["Authorization"].join(["Authorization: ", ""]),
                          "-F", f"file=@{clip}", url], capture_output=True, text=True, timeout=60, check=True)
    form = httpx.Response(200, content=out.stdout).json()
    assert form["has_audio"] and form["original_filename"] == clip.name and form["audio_format"] == "wav"
    raw = httpx.post(f"{url}?filename=again.wav", content=clip.read_bytes(), headers=auth).json()
    assert raw["original_filename"] == "again.wav" and raw["audio_file_size"] == form["audio_file_size"]
    stored = [p for p in api_settings.storage.root.rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_bytes() == clip.read_bytes()  # the first was replaced
    not_audio = httpx.post(url, files={"file": ("notes.txt", b"plain text " * 100)}, headers=auth)
    assert not_audio.status_code == 415
    no_file = httpx.post(url, data={"title": "x"}, files={"other": ("a", b"b")}, headers=auth)
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]["message"]
    docs = httpx.get(f"{live_api}/docs/openapi.json").json()
    body = docs["paths"]["/api/v1/meetings/{meeting_id}/upload"]["post"]["requestBody"]["content"]
    assert {"application/octet-stream", "multipart/form-data"} <= body.keys()


def test_jobs_list_cancel_releases_and_retry(client, make_user, api_settings, data_dir):
    _, _, _, headers = make_user()
    mid = client.post("/api/v1/meetings", json={"title": "control"}, headers=headers).json()["id"]
    clip = data_dir / "spk1_snt1.wav"
    assert client.post(f"/api/v1/meetings/{mid}/upload?filename=a.wav", content=clip.read_bytes(),
                       headers=headers).status_code == 200
    job = client.post(f"/api/v1/meetings/{mid}/transcribe", json={"beam_size": 2}, headers=headers).json()
    assert client.get("/api/v1/billing/usage", headers=headers).json()["reserved_minutes"] == "0.1"
    listed = client.get("/api/v1/jobs", params={"status": "queued"}, headers=headers).json()["items"]
    assert [j["id"] for j in listed] == [job["id"]]
    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers).json()
    assert cancelled["status"] == "cancelled"
    assert client.get("/api/v1/billing/usage", headers=headers).json()["reserved_minutes"] == "0"
    assert client.get(f"/api/v1/meetings/{mid}", headers=headers).json()["processing_status"] == "cancelled"
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers).status_code == 409
    retried = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=headers)
    assert retried.status_code == 202 and retried.json()["id"] != job["id"]
    with psycopg.connect(api_settings.database.url) as conn:
        options = conn.execute("SELECT options FROM jobs WHERE id = %s", [retried.json()["id"]]).fetchone()[0]
    assert options["beam_size"] == 2  # the same options
    _, _, _, other = make_user()
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=other).status_code == 404
    assert client.post(f"/api/v1/jobs/{uuid.uuid4()}/cancel", headers=headers).status_code == 404


def test_cancelling_a_running_job_stops_it_and_releases(conn, settings, storage, runner, data_dir, database_url):
    """The worker notices the cancellation at its next progress report, bills nothing."""
    import asyncio
    from decimal import Decimal

    from iam_cluster.db.queries import QUERIES
    from iam_cluster.queue import AsyncJobs, Jobs
    from iam_cluster.worker.loop import Worker
    from tests.fixtures.worker import add_meeting, enqueue

    user_id, meeting_id = add_meeting(conn, storage, (data_dir / "jfk.flac").read_bytes())
    job = enqueue(conn, user_id, meeting_id)
    conn.execute(QUERIES["billing_reserve"], {"job_id": job.id, "user_id": user_id, "minutes": Decimal("0.2")})

    class CancelledMidway:
        def run(self, source, options, hook, name=None):
            async def cancel():
                async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as a:
                    await AsyncJobs(a).cancel(user_id, job.id)
            asyncio.run(cancel())
            return runner.run(source, options, hook, name)

    worker = Worker(settings, runner=CancelledMidway(), storage=storage)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    ended = Jobs(conn).get(job.id)
    assert (ended.status, ended.error_code) == ("cancelled", "cancelled")
    assert conn.execute("SELECT released_at IS NOT NULL FROM quota_reservations WHERE job_id = %s",
                        [job.id]).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM usage_records WHERE job_id = %s", [job.id]).fetchone()[0] == 0
