"""The OpenAI-compatible audio API, driven by the official ``openai`` Python package."""

from __future__ import annotations

import openai
import pytest
import srt
import webvtt

from tests.fixtures.audio import normalise, reference


@pytest.fixture
def client(live_api, api_key):
    _, _, create = api_key
    return openai.OpenAI(api_key=create(), base_url=f"{live_api}/v1", max_retries=0, timeout=120)


def test_every_response_format(client, data_dir):
    jfk = data_dir / "jfk.flac"
    expected = normalise(reference(jfk))
    with jfk.open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert normalise(plain.text) == expected
    with jfk.open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert normalise(text) == expected
    with jfk.open("rb") as f:
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    cues = list(srt.parse(subtitles))
    assert cues and normalise(" ".join(c.content for c in cues)) == expected
    with jfk.open("rb") as f:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert normalise(" ".join(c.text for c in webvtt.from_string(vtt))) == expected
    with jfk.open("rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"])
    assert verbose.language == "english" and 10.9 < verbose.duration < 11.1
    assert normalise(verbose.text) == expected and verbose.segments and verbose.words
    country = [w for w in verbose.words if "country" in w.word]
    assert len(country) == 2 and country[0].start < 7.0 < country[1].start
    assert all(s.start <= s.end for s in verbose.segments)


def test_extensions_speakers_and_streaming(client, data_dir):
    with (data_dir / "sample.wav").open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", extra_body={"diarize": "true"})
    assert verbose.model_extra["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    with (data_dir / "jfk.flac").open("rb") as f:
        stream = client.audio.transcriptions.create(model="whisper-1", file=f, stream=True)
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1 and normalise("".join(deltas)) == normalise(done[0].text)
    assert "country" in done[0].text


def test_typed_errors(client, live_api, api_key, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio at all\n" * 40)
    with bad.open("rb") as f, pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=f)
    assert info.value.status_code == 415 and info.value.body["code"] == "unsupported_media"
    with (tmp_path / "notes.wav").open("rb") as f, pytest.raises(openai.UnprocessableEntityError) as info:
        client.audio.transcriptions.create(model="gpt-7", file=f)
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.UnprocessableEntityError) as info, bad.open("rb") as f:
        client.audio.translations.create(model="whisper-1", file=f)  # tiny.en cannot translate
    assert info.value.body["param"] == "task"
    _, _, create = api_key
    readonly = openai.OpenAI(api_key=create(["read"]), base_url=f"{live_api}/v1", max_retries=0)
    with bad.open("rb") as f, pytest.raises(openai.PermissionDeniedError):
        readonly.audio.transcriptions.create(model="whisper-1", file=f)
    assert [m.id for m in readonly.models.list()] == ["whisper-1", "tiny.en"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="iam_00000000_nope", base_url=f"{live_api}/v1", max_retries=0).models.list()


def test_requests_are_metered_like_jobs(client, live_api, api_key, data_dir):
    import httpx

    _, headers, _ = api_key
    with (data_dir / "jfk.flac").open("rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f)
    usage = httpx.get(f"{live_api}/api/v1/billing/usage", headers=headers).json()
    assert usage["minutes_this_month"] == "0.2" and usage["reserved_minutes"] == "0"  # 11 s, rounded up
    jobs = httpx.get(f"{live_api}/api/v1/jobs", headers=headers).json()["items"]
    assert [(j["kind"], j["status"]) for j in jobs] == [("sync", "completed")]


def test_translation_with_a_multilingual_model(api_settings, make_user, base_asr, engine_settings, data_dir):
    import msgspec

    from iam_cluster.pipeline.run import Pipeline
    from iam_cluster.pipeline.runner import InProcessRunner, Limits
    from tests.fixtures.api import serving

    e = engine_settings.engine
    base = InProcessRunner(lambda: Pipeline(base_asr, e.batch_size), None, Limits(None), e.shard_seconds)
    settings = msgspec.structs.replace(api_settings, models=msgspec.structs.replace(api_settings.models, name="base"))
    _, _, _, headers = make_user()
    with serving(settings, base) as url:
        token = headers["Authorization"].split()[1]  # an access token works where an API key does
        client = openai.OpenAI(api_key=token, base_url=f"{url}/v1", max_retries=0, timeout=300)
        with (data_dir / "multilingual.mp3").open("rb") as f:
            english = client.audio.translations.create(model="base", file=f, response_format="verbose_json")
    assert english.language in ("english", "german")
    words = normalise(english.text).split()
    assert len(words) > 50 and "license" in words  # the English part, and the German part in English
