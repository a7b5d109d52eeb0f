"""Sentiment of each segment with VADER (lexicon and rules shipped in its package), and its aggregates."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from iam_cluster.insights.sentences import speaker_of
from iam_cluster.insights.types import SegmentSentiment, SentimentLabel, TimelineBin
from iam_cluster.pipeline.types import Transcript

#: VADER's own cut-offs on the compound score.
POSITIVE = 0.05
NEGATIVE = -0.05
#: Languages the lexicon is written for.
LANGUAGES = frozenset({"en"})


@functools.cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound(text: str) -> float:
    """VADER's compound score of ``text``, in [-1, 1] (0 for text without sentiment words)."""
    return round(float(_analyzer().polarity_scores(text)["compound"]), 4)


def label(score: float) -> SentimentLabel:
    if score >= POSITIVE:
        return "positive"
    if score <= NEGATIVE:
        return "negative"
    return "neutral"


def segment_sentiment(transcript: Transcript) -> list[SegmentSentiment]:
    """One score per segment that has text, in transcript order."""
    out = []
    for seg in transcript.segments:
        text = seg.text.strip()
        if not text:
            continue
        score = compound(text)
        out.append(SegmentSentiment(segment=seg.id, start=seg.start, end=seg.end, speaker=speaker_of(seg),
                                    compound=score, label=label(score)))
    return out


def weighted_mean(items: Iterable[SegmentSentiment]) -> float:
    """Mean compound score weighted by each segment's duration (short back-channels weigh little)."""
    total = weight = 0.0
    for s in items:
        w = max(s.end - s.start, 0.01)
        total += w * s.compound
        weight += w
    return round(total / weight, 4) if weight else 0.0


def timeline(scores: list[SegmentSentiment], duration: float, bin_seconds: float) -> list[TimelineBin]:
    """Sentiment over time: bins of ``bin_seconds`` from 0 to ``duration``.

    A segment counts in every bin it overlaps, weighted by the overlap; a bin without speech is
    neutral with ``speech_seconds`` 0.
    """
    end = max(duration, max((s.end for s in scores), default=0.0))
    n = max(1, math.ceil(end / bin_seconds - 1e-9))
    sums = [0.0] * n
    weights = [0.0] * n
    for s in scores:
        first = min(n - 1, int(s.start // bin_seconds))
        last = min(n - 1, int(max(s.start, s.end - 1e-9) // bin_seconds))
        for i in range(first, last + 1):
            lo, hi = i * bin_seconds, (i + 1) * bin_seconds
            overlap = max(0.0, min(hi, s.end) - max(lo, s.start)) or (0.01 if first == last else 0.0)
            sums[i] += overlap * s.compound
            weights[i] += overlap
    bins = []
    for i in range(n):
        score = round(sums[i] / weights[i], 4) if weights[i] else 0.0
        bins.append(TimelineBin(start=round(i * bin_seconds, 3), end=round(min((i + 1) * bin_seconds, end), 3),
                                compound=score, label=label(score), speech_seconds=round(weights[i], 3)))
    return bins
