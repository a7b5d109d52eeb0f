"""The Serve application on a real local Ray: same results as in process, shared batches, shards."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from iam_cluster.errors import MediaError
from iam_cluster.pipeline.types import SAMPLE_RATE, TranscribeOptions
from iam_cluster.serve.client import transcribe_remote
from iam_cluster.serve.ingress import transcript_from

pytestmark = pytest.mark.slow


def call(handle, data, options=None, name="clip"):
    return transcript_from(handle.transcribe.remote(data, options or {}, name).result())


def test_same_text_and_speakers_as_in_process(serve_app, pipeline, data_dir, harvard):
    handle, _, _ = serve_app
    remote = call(handle, harvard[0].read_bytes())
    local = pipeline.transcribe(harvard[0])
    assert remote.text == local.text and remote.model == local.model
    remote = call(handle, (data_dir / "sample.wav").read_bytes(), {"diarize": True})
    local = pipeline.transcribe(data_dir / "sample.wav", TranscribeOptions(diarize=True))
    assert remote.text.split() == local.text.split()
    assert remote.speakers == local.speakers == ["SPEAKER_00", "SPEAKER_01"]


def test_concurrent_requests_share_asr_batches(serve_app, harvard):
    handle, _, _ = serve_app
    from ray import serve

    asr_handle = serve.get_deployment_handle("ASR", app_name="iam")
    before = len(asr_handle.batch_sizes_seen.remote().result())
    responses = [handle.transcribe.remote(p.read_bytes(), {"pack_recordings": False}, p.name) for p in harvard]
    texts = [transcript_from(r.result()).text for r in responses]
    assert all(texts)
    sizes = asr_handle.batch_sizes_seen.remote().result()[before:]
    assert sum(sizes) == len(harvard) and max(sizes) > 1, sizes


def test_long_recording_in_shards_keeps_speaker_labels(serve_app, long_recording):
    handle, _, args = serve_app
    buffer = io.BytesIO()
    sf.write(buffer, long_recording.samples, SAMPLE_RATE, format="WAV")
    assert long_recording.duration > 2 * args.shard_seconds
    t = call(handle, buffer.getvalue(), {"diarize": True}, "long.wav")
    assert abs(t.duration - long_recording.duration) < 0.01
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts) and t.segments[-1].end <= t.duration
    # JFK speaks at ~31-42 s (first shard) and again at ~135-146 s (third shard): one label.
    jfk = [w.speaker for s in t.segments for w in s.words if "country" in w.word.lower()]
    assert len(jfk) == 4 and len(set(jfk)) == 1, jfk


def test_a_corrupt_file_fails_alone(serve_app, harvard):
    handle, address, _ = serve_app
    good = [handle.transcribe.remote(p.read_bytes(), {}, p.name) for p in harvard[:2]]
    bad = handle.transcribe.remote(b"\x00not audio" * 50, {}, "broken.wav")
    with pytest.raises(MediaError) as info:
        bad.result()
    assert info.value.code == "unsupported_media" and "broken.wav" in str(info.value)
    assert all(transcript_from(r.result()).text for r in good)


def test_http_client_and_errors(serve_app, harvard, tmp_path):
    _, address, _ = serve_app
    t = transcribe_remote(harvard[1], TranscribeOptions(), address)
    assert t.text and t.segments
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(MediaError) as info:
        transcribe_remote(broken, TranscribeOptions(), address)
    assert info.value.code in {"unsupported_media", "truncated_media"}
