"""Meetings over HTTP: CRUD, search, uploads (checked, size-limited), idempotent jobs, transcripts."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import psycopg
import pytest
from psycopg.types.json import Jsonb

DATA = Path(__file__).parents[1] / "data"
CLIP = DATA / "spk1_snt1.wav"
BASE = "/api/v1/meetings"


def stored_files(settings) -> list[Path]:
    root = Path(settings.storage.root)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def create(client, headers, title="Weekly planning", **extra) -> dict:
    r = client.post(BASE, json={"title": title, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def upload(client, headers, meeting_id, path=CLIP, filename=None, content=None):
    body = content if content is not None else path.read_bytes()
    return client.post(f"{BASE}/{meeting_id}/upload", content=body,
                       params={"filename": filename or path.name},
                       headers={**headers, "Content-Type": "application/octet-stream"})


def test_crud_and_listing(client, make_user):
    _, _, _, headers = make_user()
    m = create(client, headers, description="Roadmap", meeting_date="2026-01-02T10:00:00Z")
    assert m["title"] == "Weekly planning" and m["processing_status"] == "none" and m["job"] is None
    assert m["has_audio"] is False
    second = create(client, headers, title="Retro")
    page = client.get(BASE, headers=headers).json()
    assert [i["id"] for i in page["items"]] == [second["id"], m["id"]] and page["total"] == 2
    page = client.get(BASE, params={"limit": 1, "offset": 1}, headers=headers).json()
    assert [i["id"] for i in page["items"]] == [m["id"]] and page["total"] == 2
    for bad in ({"limit": 0}, {"limit": 1000}, {"offset": -1}):
        assert client.get(BASE, params=bad, headers=headers).status_code == 400

    r = client.put(f"{BASE}/{m['id']}", json={"title": "Quarterly planning"}, headers=headers)
    assert r.status_code == 200 and r.json()["title"] == "Quarterly planning"
    assert r.json()["description"] == "Roadmap" and r.json()["meeting_date"].startswith("2026-01-02")
    r = client.put(f"{BASE}/{m['id']}", json={"description": None}, headers=headers)
    assert r.status_code == 200 and r.json()["description"] is None and r.json()["title"] == "Quarterly planning"

    for bad in ({"title": ""}, {"title": "x" * 201}, {"title": "ok", "extra": 1}, {"description": "d" * 5001}, {}):
        assert client.post(BASE, json=bad, headers=headers).status_code == 400, bad
    assert client.put(f"{BASE}/{m['id']}", json={"owner": "me"}, headers=headers).status_code == 400
    assert client.get(BASE).status_code == 401

    assert client.delete(f"{BASE}/{second['id']}", headers=headers).status_code == 204
    assert client.get(f"{BASE}/{second['id']}", headers=headers).status_code == 404
    assert client.delete(f"{BASE}/{second['id']}", headers=headers).status_code == 404


def test_search_by_title_words(client, make_user):
    _, _, _, headers = make_user()
    target = create(client, headers, title="Budget review with finance")
    create(client, headers, title="Design sync")
    _, _, _, other = make_user()
    create(client, other, title="Budget review elsewhere")
    r = client.get(BASE, params={"q": "finance budget"}, headers=headers)
    assert r.status_code == 200
    assert [i["id"] for i in r.json()["items"]] == [target["id"]]
    assert client.get(BASE, params={"q": "nothing matches"}, headers=headers).json()["items"] == []
    assert len(client.get(BASE, params={"q": "  "}, headers=headers).json()["items"]) == 2


def test_upload_transcribe_and_idempotency(client, make_user, api_settings):
    _, _, _, headers = make_user()
    m = create(client, headers)
    mid = m["id"]
    # Nothing to transcribe yet.
    r = client.post(f"{BASE}/{mid}/transcribe", json={}, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"

    r = upload(client, headers, mid, filename="../../etc/My Clip?.wav")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["audio_format"] == "wav" and body["duration_seconds"] == pytest.approx(2.87, abs=0.05)
    assert body["audio_file_size"] == CLIP.stat().st_size and body["original_filename"] == "My Clip_.wav"
    polled = client.get(f"{BASE}/{mid}", headers=headers).json()
    assert polled["audio_format"] == "wav" and polled["has_audio"] and "audio_file_url" not in polled
    (first_file,) = stored_files(api_settings)
    assert first_file.read_bytes() == CLIP.read_bytes()

    # Uploading again replaces the stored object.
    assert upload(client, headers, mid, path=DATA / "spk1_snt2.wav").status_code == 200
    (second_file,) = stored_files(api_settings)
    assert second_file != first_file and second_file.read_bytes() == (DATA / "spk1_snt2.wav").read_bytes()

    options = {"language": "en", "model": "tiny.en", "diarize": False}
    key = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    r = client.post(f"{BASE}/{mid}/transcribe", json=options, headers={**headers, **key})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["progress"] == 0
    # Replay with the same body (keys in another order): the same job.
    replay = client.post(f"{BASE}/{mid}/transcribe", json=dict(reversed(options.items())), headers={**headers, **key})
    assert replay.status_code in (200, 202) and replay.json()["id"] == job["id"]
    # Same key, different body.
    r = client.post(f"{BASE}/{mid}/transcribe", json={**options, "model": "base"}, headers={**headers, **key})
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_conflict"
    # A second job while one is queued.
    r = client.post(f"{BASE}/{mid}/transcribe", json=options, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    # Uploading while queued is refused too, and leaves the stored audio alone.
    assert upload(client, headers, mid).status_code == 409
    assert stored_files(api_settings) == [second_file]

    polled = client.get(f"{BASE}/{mid}", headers=headers).json()
    assert polled["processing_status"] == "queued"
    assert polled["job"]["id"] == job["id"] and polled["job"]["status"] == "queued"
    assert polled["job"]["error_code"] is None

    with psycopg.connect(api_settings.database.url) as conn:
        rows = conn.execute("SELECT options, request_hash, idempotency_key FROM jobs WHERE meeting_id = %s",
                            (mid,)).fetchall()
    assert len(rows) == 1 and rows[0][1] and rows[0][2] == key["Idempotency-Key"]
    # The worker reads the options as the pipeline's TranscribeOptions.
    from iam_cluster.pipeline.types import TranscribeOptions

    stored = msgspec.convert(rows[0][0], TranscribeOptions)
    assert stored.language == "en" and stored.diarize is False and stored.word_timestamps is True


def test_transcribe_options_are_validated_once_at_the_boundary(client, make_user, api_settings):
    """Every invalid option, alone or in combination, is 422 ``invalid_options`` naming the field,
    and no job is queued (so no worker ever retries an invalid job)."""
    _, _, _, headers = make_user()
    mid = create(client, headers)["id"]
    assert upload(client, headers, mid).status_code == 200
    for bad, field in [({"model": "large-v3"}, "model"), ({"model": "base"}, "model"), ({"speed": 2}, "speed"),
                       ({"num_speakers": 0, "diarize": True}, "num_speakers"),
                       ({"min_speakers": 3, "max_speakers": 2, "diarize": True}, "min_speakers"),
                       ({"num_speakers": 2, "min_speakers": 1, "diarize": True}, "num_speakers"),
                       ({"num_speakers": 2}, "num_speakers"), ({"language": "english please"}, "language"),
                       ({"language": "de"}, "language"), ({"task": "translate"}, "task"),
                       ({"beam_size": 99}, "beam_size"), ({"vad": {"threshold": 1.5}}, "vad.threshold"),
                       ({"temperatures": []}, "temperatures")]:
        r = client.post(f"{BASE}/{mid}/transcribe", json=bad, headers=headers)
        assert r.status_code == 422, (bad, r.text)
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_options", field), (bad, error)
    with psycopg.connect(api_settings.database.url) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_non_audio_upload_is_refused_and_nothing_stored(client, make_user, api_settings):
    _, _, _, headers = make_user()
    mid = create(client, headers)["id"]
    r = upload(client, headers, mid, filename="notes.txt", content=b"this is not audio at all\n" * 100)
    assert r.status_code in (415, 422)
    assert r.json()["error"]["code"] == "unsupported_media" and "notes.txt" in r.json()["error"]["message"]
    r = upload(client, headers, mid, filename="empty.wav", content=b"")
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_media"
    assert stored_files(api_settings) == []
    m = client.get(f"{BASE}/{mid}", headers=headers).json()
    assert m["has_audio"] is False and m["audio_format"] is None


def test_oversized_upload_is_413_and_nothing_stored(api_settings, make_user):
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    small = msgspec.structs.replace(api_settings,
                                    storage=msgspec.structs.replace(api_settings.storage, max_upload_bytes=10_000))
    _, _, _, headers = make_user()
    with TestClient(create_app(small)) as client:
        mid = create(client, headers)["id"]
        r = upload(client, headers, mid)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        # Streamed without a Content-Length, the storage limit stops it.
        def chunks():
            data = CLIP.read_bytes()
            for i in range(0, len(data), 4096):
                yield data[i:i + 4096]
        r = client.post(f"{BASE}/{mid}/upload", content=chunks(), headers=headers)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert client.get(f"{BASE}/{mid}", headers=headers).json()["has_audio"] is False
    assert stored_files(small) == []


def test_another_user_gets_404_everywhere(client, make_user):
    _, _, _, owner = make_user()
    _, _, _, other = make_user()
    mid = create(client, owner)["id"]
    assert upload(client, owner, mid).status_code == 200
    calls = [
        ("GET", f"{BASE}/{mid}", {}),
        ("PUT", f"{BASE}/{mid}", {"json": {"title": "mine now"}}),
        ("DELETE", f"{BASE}/{mid}", {}),
        ("POST", f"{BASE}/{mid}/upload", {"content": CLIP.read_bytes()}),
        ("POST", f"{BASE}/{mid}/transcribe", {"json": {}}),
        ("GET", f"{BASE}/{mid}/transcript", {}),
    ]
    for method, url, kwargs in calls:
        r = client.request(method, url, headers=other, **kwargs)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, url, r.text)
    assert client.get(BASE, headers=other).json()["items"] == []
    assert client.get(f"{BASE}/{uuid.uuid4()}", headers=owner).status_code == 404
    assert client.get(f"{BASE}/{mid}", headers=owner).json()["title"] == "Weekly planning"


def test_delete_removes_stored_audio(client, make_user, api_settings):
    _, _, _, headers = make_user()
    mid = create(client, headers)["id"]
    assert upload(client, headers, mid).status_code == 200
    r = client.post(f"{BASE}/{mid}/transcribe", headers=headers)  # no body: default options
    assert r.status_code == 202, r.text
    assert len(stored_files(api_settings)) == 1
    assert client.delete(f"{BASE}/{mid}", headers=headers).status_code == 204
    assert stored_files(api_settings) == []
    with psycopg.connect(api_settings.database.url) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE meeting_id = %s", (mid,)).fetchone()[0] == 0


SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 1.5, "text": " The birch canoe slid", "speaker": "SPEAKER_00"},
    {"id": 1, "start": 1.5, "end": 2.8, "text": " on the smooth planks.", "speaker": "SPEAKER_01"},
]
#: What the worker stores: the whole transcript as the engine made it.
WHOLE = {"source": "clip.wav", "duration": 2.8, "language": "en", "language_probability": 0.93,
         "segments": SEGMENTS, "model": "tiny.en", "speech_duration": 2.5, "confidence": 0.81,
         "speakers": ["SPEAKER_00", "SPEAKER_01"], "options": {"beam_size": 3, "diarize": True}}


def test_transcript_formats(client, make_user, api_settings):
    _, _, _, headers = make_user()
    mid = create(client, headers)["id"]
    assert upload(client, headers, mid).status_code == 200
    r = client.get(f"{BASE}/{mid}/transcript", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"

    # What the worker writes when a job completes.
    with psycopg.connect(api_settings.database.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE meetings SET processing_status = 'completed', transcript = %(s)s, transcription_text = %(t)s,"
            " language_detected = 'en', processing_completed_at = now() WHERE id = %(id)s",
            {"s": Jsonb(WHOLE), "t": "The birch canoe slid on the smooth planks.", "id": mid})

    r = client.get(f"{BASE}/{mid}/transcript", params={"format": "json"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["language"] == "en" and [s["text"] for s in doc["segments"]] == [s["text"] for s in SEGMENTS]
    # Served as stored: nothing invented, nothing lost.
    assert (doc["language_probability"], doc["confidence"], doc["speech_duration"]) == (0.93, 0.81, 2.5)
    assert doc["speakers"] == ["SPEAKER_00", "SPEAKER_01"] and doc["options"]["beam_size"] == 3
    assert client.get(f"{BASE}/{mid}/transcript", headers=headers).json() == doc  # json is the default

    r = client.get(f"{BASE}/{mid}/transcript", params={"format": "srt"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "00:00:00,000 --> 00:00:01,500" in r.text and "[SPEAKER_00] The birch canoe slid" in r.text
    vtt = client.get(f"{BASE}/{mid}/transcript", params={"format": "vtt"}, headers=headers).text
    assert vtt.startswith("WEBVTT") and "00:00:01.500 --> 00:00:02.800" in vtt
    txt = client.get(f"{BASE}/{mid}/transcript", params={"format": "txt"}, headers=headers).text
    assert txt == "SPEAKER_00: The birch canoe slid\nSPEAKER_01: on the smooth planks.\n"
    rttm = client.get(f"{BASE}/{mid}/transcript", params={"format": "rttm"}, headers=headers).text
    assert rttm.count("SPEAKER ") == 2 and "SPEAKER_01" in rttm
    assert client.get(f"{BASE}/{mid}/transcript", params={"format": "docx"}, headers=headers).status_code == 400

    # The transcript text is searchable.
    found = client.get(BASE, params={"q": "canoe"}, headers=headers).json()["items"]
    assert [i["id"] for i in found] == [mid]

