"""Silero VAD, whole and in parallel parts, with and without its quiet-stretch gate: the same speech
either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iam_cluster.pipeline.level import gain_and_power
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, VadOptions
from iam_cluster.pipeline.vad import GATE_MARGIN, GATE_SECONDS, SileroVad, _audible, _join, quiet_cuts, speech_duration


def test_cuts_land_on_quiet_spots():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100 * SAMPLE_RATE).astype(np.float32)
    x[48 * SAMPLE_RATE : 49 * SAMPLE_RATE] = 0  # the only silence near the middle
    (cut,) = quiet_cuts(x, 2)
    assert 48 * SAMPLE_RATE <= cut <= 49 * SAMPLE_RATE


def test_join_rejoins_a_region_split_by_a_cut():
    regions = [SpeechRegion(1, 10), SpeechRegion(10.01, 14), SpeechRegion(20, 25)]
    assert _join(regions, [10.0], max_region=29) == [SpeechRegion(1, 14), SpeechRegion(20, 25)]
    assert len(_join(regions, [10.0], max_region=12)) == 3  # would be too long
    assert len(_join(regions, [17.0], max_region=29)) == 3  # not at a cut


def test_parallel_scan_finds_the_same_speech(long_recording):
    options = VadOptions()
    whole = SileroVad(workers=1)(long_recording, options, 29.0)
    parts = SileroVad(workers=2)(long_recording, options, 29.0)
    assert abs(speech_duration(parts) - speech_duration(whole)) < 0.02 * speech_duration(whole)
    assert all(a.end <= b.start for a, b in zip(parts, parts[1:]))
    assert all(r.duration <= 29.0 for r in parts)


def test_empty_and_silent_audio():
    assert SileroVad()(Audio("empty", np.zeros(0, np.float32)), VadOptions(), 29.0) == []
    assert SileroVad()(Audio("silence", np.zeros(70 * SAMPLE_RATE, np.float32)), VadOptions(), 29.0) == []


def _gated_recording(quiet_db: float) -> np.ndarray:
    """Two AMI excerpts (far-field meeting speech) with 40 s of room hiss between them and 20 s
    after, the hiss ``quiet_db`` below the speech level."""
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.level import speech_level

    data = Path(__file__).parents[1] / "data"
    dev00, trn04 = (decode_audio(data / name).samples for name in ("dev00.wav", "trn04.wav"))
    rms = 10 ** ((speech_level(dev00) - quiet_db) / 20)
    hiss = np.random.default_rng(0).normal(0, rms, 40 * SAMPLE_RATE).astype(np.float32)
    return np.concatenate([dev00, hiss, trn04, hiss[: 20 * SAMPLE_RATE]])


def _lost(whole: list[SpeechRegion], gated: list[SpeechRegion]) -> float:
    """Seconds of ``whole``'s regions that no region of ``gated`` covers."""
    return sum(
        r.duration - sum(max(0.0, min(r.end, g.end) - max(r.start, g.start)) for g in gated) for r in whole
    )


def test_long_quiet_stretches_are_left_out_of_the_scan_and_the_speech_found_is_the_same():
    x = _gated_recording(quiet_db=50)
    g, power = gain_and_power(x)
    spans = np.array(_audible(power, g, 0, len(x))) / SAMPLE_RATE
    # the hiss is not scanned but for GATE_MARGIN next to the speech
    assert np.allclose(spans, [(0, 30 + GATE_MARGIN), (70 - GATE_MARGIN, 100 + GATE_MARGIN)], atol=0.1)
    audio = Audio("meeting-with-breaks", x)
    gated = SileroVad(workers=1)(audio, VadOptions(), 29.0)
    whole = SileroVad(workers=1, gate=False)(audio, VadOptions(), 29.0)
    # no speech lost: the unskipped scan's regions lie within the gated scan's
    assert _lost(whole, gated) < 0.05
    assert all(r.end <= 31 or r.start >= 69 for r in gated)  # nothing in the hiss
    # the first excerpt is scanned as before; after the skipped hiss Silero starts afresh, where
    # the unskipped scan had 40 s of hiss behind it (it may hear quiet speech there sooner)
    assert [r for r in gated if r.end <= 31] == [r for r in whole if r.end <= 31]
    assert speech_duration(gated) <= speech_duration(whole) + 3.0


def test_quiet_speech_is_not_lost_and_short_pauses_are_scanned():
    # hiss only 25 dB below the speech: far-field speech can sit there, so it is scanned
    x = _gated_recording(quiet_db=25)
    g, power = gain_and_power(x)
    assert _audible(power, g, 0, len(x)) == [(0, len(x))]
    # far-field speech 20 dB below the near speaker's: the long near-silent opening of the far
    # excerpt (trn04, whose first turn starts at 14 s) is skipped, and no speech the unskipped
    # scan finds is lost
    near = x[: 30 * SAMPLE_RATE]
    far = x[70 * SAMPLE_RATE : 100 * SAMPLE_RATE] * np.float32(10 ** (-20 / 20))
    both = Audio("near-and-far", np.concatenate([near, far]))
    g, power = gain_and_power(both.samples)
    assert len(_audible(power, g, 0, len(both.samples))) == 2
    gated = SileroVad(workers=1)(both, VadOptions(), 29.0)
    whole = SileroVad(workers=1, gate=False)(both, VadOptions(), 29.0)
    assert _lost(whole, gated) < 0.05
    # a quiet stretch shorter than GATE_SECONDS is scanned whole
    short = np.concatenate([x[: 30 * SAMPLE_RATE], np.zeros(int((GATE_SECONDS - 0.5) * SAMPLE_RATE), np.float32),
                            x[: 30 * SAMPLE_RATE]])
    g, power = gain_and_power(short)
    assert _audible(power, g, 0, len(short)) == [(0, len(short))]


def test_a_wholly_quiet_range_is_not_scanned_at_all():
    hiss = np.random.default_rng(1).normal(0, 1e-4, 70 * SAMPLE_RATE).astype(np.float32)
    speech = np.concatenate([_gated_recording(quiet_db=50)[: 30 * SAMPLE_RATE], hiss])
    g, power = gain_and_power(speech)
    assert _audible(power, g, 40 * SAMPLE_RATE, 100 * SAMPLE_RATE) == []
    ((a, b),) = _audible(power, g, 0, 100 * SAMPLE_RATE)
    assert a == 0 and abs(b / SAMPLE_RATE - (30 + GATE_MARGIN)) < 0.1
