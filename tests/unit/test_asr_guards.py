"""The ASR's judgement of an attempt: too many words for the audio."""

from __future__ import annotations

from iam_cluster.pipeline.asr import MAX_WORDS_PER_SECOND, _better, too_dense
from iam_cluster.pipeline.types import TranscribeOptions


def test_too_dense_allows_fast_speech_and_short_clips():
    assert not too_dense(0, 0.0) and not too_dense(2, 0.1)  # two words of slack
    assert not too_dense(8, 1.08)  # "I thought, you know, I heard a beat." as aligned in sample.wav
    assert not too_dense(120, 29.0)  # four words a second over a full window
    assert too_dense(19, 1.3)  # the trn01 hallucination
    assert too_dense(int(MAX_WORDS_PER_SECOND * 30) + 3, 30.0)


def test_an_attempt_the_audio_can_hold_is_preferred():
    o = TranscribeOptions()
    dense = dict(dense=True, compression_ratio=1.2, avg_logprob=-0.1)
    sparse = dict(dense=False, compression_ratio=3.0, avg_logprob=-1.5)
    assert _better(sparse, dense, o) and not _better(dense, sparse, o)
    ok = dict(dense=False, compression_ratio=1.2, avg_logprob=-0.5)
    assert _better(ok, sparse, o) and not _better(sparse, ok, o)
