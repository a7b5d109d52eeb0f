"""The whole service over HTTP: register, log in, upload, transcribe, a real worker, poll, transcript."""

from __future__ import annotations

import threading
import time

import srt

from iam_cluster.queue import Jobs
from iam_cluster.worker.loop import Worker
from tests.fixtures.audio import normalise, reference


def test_register_upload_transcribe_poll_and_export(client, api_settings, runner, harvard):
    r = client.post("/api/v1/auth/register", json={"email": "Ada@Example.com", "password": "correct horse 1"})
    assert r.status_code == 201
    tokens = client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "correct horse 1"}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    meeting = client.post("/api/v1/meetings", json={"title": "Harvard sentences"}, headers=headers).json()
    url = f"/api/v1/meetings/{meeting['id']}"
    clip = harvard[0]
    r = client.post(f"{url}/upload?filename={clip.name}", content=clip.read_bytes(), headers=headers)
    assert r.status_code in (200, 201), r.text
    # A real worker already waiting on the queue: it must be woken by the API's enqueue (pg_notify),
    # not find the job by polling (it would poll only after a minute).
    worker, stop = Worker(api_settings, runner=runner), threading.Event()
    waiting = threading.Thread(target=worker.run, args=(stop,), kwargs={"poll_seconds": 60.0})
    waiting.start()
    try:
        time.sleep(0.5)  # the worker found the queue empty and listens
        job = client.post(f"{url}/transcribe", json={}, headers={**headers, "Idempotency-Key": "k1"})
        assert job.status_code == 202 and job.json()["status"] == "queued"
        started = time.monotonic()
        while client.get(url, headers=headers).json()["processing_status"] != "completed":
            assert time.monotonic() - started < 30, "the worker was not woken by the enqueue"
            time.sleep(0.1)
    finally:
        stop.set()
        waiting.join(timeout=30)

    polled = client.get(url, headers=headers).json()
    assert polled["processing_status"] == "completed" and polled["job"]["status"] == "completed"
    assert normalise(polled["transcription_text"]) == normalise(reference(clip))
    cues = list(srt.parse(client.get(f"{url}/transcript?format=srt", headers=headers).text))
    assert cues and normalise(" ".join(c.content for c in cues)) == normalise(reference(clip))
    found = client.get("/api/v1/meetings", params={"q": "small dog"}, headers=headers).json()
    assert [m["id"] for m in found["items"]] == [meeting["id"]]
    # a replay of the same request returns the same (now finished) job and queues nothing new
    again = client.post(f"{url}/transcribe", json={}, headers={**headers, "Idempotency-Key": "k1"})
    assert again.json()["id"] == job.json()["id"]
    assert not Worker(api_settings, runner=runner).run_once()
    with worker.connect() as conn:
        assert Jobs(conn).get(job.json()["id"]).attempts == 1
