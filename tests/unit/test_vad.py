"""Silero VAD, whole and in parallel parts: the same speech either way."""

from __future__ import annotations

import numpy as np

from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, VadOptions
from iam_cluster.pipeline.vad import SileroVad, _join, quiet_cuts, speech_duration


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
