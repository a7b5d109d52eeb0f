"""Meeting insights over HTTP: computed by a real worker, read, recomputed, exported, scoped to the owner."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from litestar.testing import TestClient

from iam_cluster.api.app import create_app
from iam_cluster.settings import InsightsSettings
from iam_cluster.worker.loop import Worker
from tests.e2e.test_meetings import BASE, DATA, create, upload

RECORDING = DATA / "dev00.wav"


def transcribed(client, headers, settings, runner) -> str:
    """A meeting whose dev00.wav went through upload, a transcription job and the real worker."""
    mid = create(client, headers, title="Design review")["id"]
    assert upload(client, headers, mid, path=RECORDING).status_code == 200
    assert client.post(f"{BASE}/{mid}/transcribe", json={"language": "en"}, headers=headers).status_code == 202
    worker = Worker(settings, runner=runner)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    return mid


def test_worker_insights_are_served_recomputed_and_exported(client, make_user, api_settings, runner):
    _, _, _, headers = make_user()
    mid = transcribed(client, headers, api_settings, runner)

    r = client.get(f"{BASE}/{mid}/insights", headers=headers)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["meeting_id"], doc["status"], doc["backend"], doc["error"]) == (mid, "completed", "offline", None)
    ins = doc["insights"]
    text = client.get(f"{BASE}/{mid}", headers=headers).json()["transcription_text"]
    assert 1 <= len(ins["summary"]) <= 5 and all(s["text"] in text for s in ins["summary"])
    assert ins["speakers"] and ins["speech_time"] > 0 and ins["language"] == "en"

    # Recomputed from the stored transcript, with overrides; nothing is transcribed again.
    r = client.post(f"{BASE}/{mid}/insights", json={"summary_sentences": 1, "keywords": 2}, headers=headers)
    assert r.status_code == 200, r.text
    again = r.json()
    assert len(again["insights"]["summary"]) == 1 and len(again["insights"]["keywords"]) <= 2
    assert again["computed_at"] > doc["computed_at"]
    assert client.get(f"{BASE}/{mid}/insights", headers=headers).json() == again
    assert client.get(f"{BASE}/{mid}", headers=headers).json()["job"]["attempts"] == 1

    export = client.get(f"{BASE}/{mid}/transcript", params={"format": "json"}, headers=headers).json()
    assert export["insights"] == again["insights"] and export["segments"]
    assert "insights" not in client.get(f"{BASE}/{mid}/transcript", params={"format": "txt"},
                                        headers=headers).text


def test_insights_are_scoped_and_wait_for_a_transcript(client, make_user, api_settings):
    _, _, _, owner = make_user()
    _, _, _, other = make_user()
    mid = create(client, owner)["id"]
    for method in ("GET", "POST"):
        r = client.request(method, f"{BASE}/{mid}/insights", headers=owner)
        assert r.status_code == 409 and "no transcript yet" in r.json()["error"]["message"]
        r = client.request(method, f"{BASE}/{mid}/insights", headers=other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert client.request(method, f"{BASE}/{uuid.uuid4()}/insights", headers=owner).status_code == 404
        assert client.request(method, f"{BASE}/{mid}/insights").status_code == 401
    r = client.post(f"{BASE}/{mid}/insights", json={"summary_sentences": 0}, headers=owner)
    assert r.status_code == 400
    r = client.post(f"{BASE}/{mid}/insights", json={"surprise": 1}, headers=owner)
    assert r.status_code == 400


def test_another_user_never_sees_stored_insights(client, make_user, api_settings, runner):
    _, _, _, owner = make_user()
    _, _, _, other = make_user()
    mid = transcribed(client, owner, api_settings, runner)
    assert client.get(f"{BASE}/{mid}/insights", headers=owner).status_code == 200
    for method in ("GET", "POST"):
        r = client.request(method, f"{BASE}/{mid}/insights", headers=other)
        assert r.status_code == 404, r.text
    assert client.get(f"{BASE}/{mid}/transcript", headers=other).status_code == 404


@pytest.mark.parametrize("failing", [False, True])
def test_recompute_with_the_chat_endpoint(api_settings, make_user, runner, fake_llm, failing):
    settings = msgspec.structs.replace(api_settings, insights=InsightsSettings(
        llm_base_url=fake_llm.url, llm_model="meeting-model", llm_api_key="sk-1", llm_timeout_seconds=2))
    if failing:
        fake_llm.fail_with(503)
    with TestClient(create_app(settings)) as client:
        _, _, _, headers = make_user()
        mid = transcribed(client, headers, msgspec.structs.replace(settings, insights=InsightsSettings()), runner)
        r = client.post(f"{BASE}/{mid}/insights", headers=headers)
        assert r.status_code == 200, r.text
        ins = r.json()["insights"]
        if failing:
            assert r.json()["backend"] == "offline" and "abstract" not in ins
            assert any("HTTP 503" in w for w in ins["warnings"])
        else:
            assert r.json()["backend"] == "llm:meeting-model" and ins["abstract"].startswith("The team agreed")
            assert [a["source"] for a in ins["action_items"]] == ["llm"]
        # Offline for this one request, whatever the server has configured.
        r = client.post(f"{BASE}/{mid}/insights", json={"abstractive": False}, headers=headers)
        assert r.json()["backend"] == "offline"
    assert len(fake_llm.requests) == 1
