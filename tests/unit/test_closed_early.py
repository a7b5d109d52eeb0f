"""Which windows are decoded on before they are aligned (``asr.closed_early``)."""

from __future__ import annotations

from types import SimpleNamespace

from iam_cluster.pipeline.asr import TAIL_GAP, closed_early
from iam_cluster.pipeline.types import TranscribeOptions

TOK = SimpleNamespace(eot=50256, timestamp_begin=50363)  # tiny.en's ids
PRECISION = 0.02


def ts(seconds: float) -> int:
    return TOK.timestamp_begin + round(seconds / PRECISION)


def attempt(tokens, no_speech_prob=0.01, avg_logprob=-0.3, dense=False) -> dict:
    return dict(tokens=tokens, no_speech_prob=no_speech_prob, avg_logprob=avg_logprob, dense=dense)


def test_only_text_closed_by_a_timestamp_well_before_the_end_of_the_audio():
    closed = [ts(0.0), 11, 12, ts(20.0)]
    best = [
        attempt(closed),  # closed at 20 s of 29: decoded on before it is aligned
        attempt([ts(0.0), 11, 12, ts(29.0 - TAIL_GAP / 2)]),  # closed near the end: no
        attempt([ts(0.0), 11, 12, ts(20.0), 13, 14]),  # text left open: judged by its aligned words
        attempt(closed, no_speech_prob=0.9, avg_logprob=-1.5),  # silent: the guard empties it
        attempt(closed, dense=True),  # too many words for its audio: dropped
        attempt([ts(0.0), ts(1.0)]),  # no text at all
        None,
        attempt(closed),  # a window of several files: never decoded on
    ]
    tails = [True] * 7 + [False]
    assert closed_early(best, [29.0] * len(best), TOK, PRECISION, tails, TranscribeOptions()) == {0}
