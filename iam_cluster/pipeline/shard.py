"""Sharding: cut a long recording at silences into shards that replicas process in parallel."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, Segment, Shard, SpeechRegion, Transcript


def shard(audio: Audio, regions: Sequence[SpeechRegion], shard_seconds: float) -> list[Shard]:
    """Cut ``audio`` into shards of about ``shard_seconds``, always between two speech regions.

    A cut goes in the middle of the silence (between regions) nearest to each multiple of
    ``shard_seconds``, so no word is ever split. A recording shorter than 1.5 shards, or one
    without a silence to cut at, stays whole.
    """
    if audio.duration < 1.5 * shard_seconds or len(regions) < 2:
        return [Shard(0, 0.0, audio, list(regions))]
    gaps = [(a.end + b.start) / 2 for a, b in zip(regions, regions[1:])]
    cuts: list[float] = []
    target = shard_seconds
    while target < audio.duration - shard_seconds / 2:
        best = min(gaps, key=lambda g: abs(g - target))
        if (not cuts or best > cuts[-1] + shard_seconds / 4) and best < audio.duration:
            cuts.append(best)
        target = (cuts[-1] if cuts else target) + shard_seconds
    bounds = list(zip([0.0, *cuts], [*cuts, audio.duration]))
    shards = []
    for i, (start, end) in enumerate(bounds):
        samples = audio.samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        inside = [
            SpeechRegion(max(0.0, r.start - start), min(end, r.end) - start)
            for r in regions
            if r.start >= start and r.end <= end
        ]
        shards.append(Shard(i, start, Audio(f"{audio.source}#shard{i}", samples), inside))
    return shards


def join_transcripts(parts: Sequence[tuple[float, Transcript]], source: str, duration: float) -> Transcript:
    """One transcript from the transcripts of a recording's shards (times shifted by offsets)."""
    if len(parts) == 1 and parts[0][0] == 0.0:
        return msgspec.structs.replace(parts[0][1], source=source, duration=round(duration, 3))
    segments: list[Segment] = []
    for offset, t in parts:
        for s in t.segments:
            words = [msgspec.structs.replace(w, start=round(w.start + offset, 3), end=round(w.end + offset, 3))
                     for w in s.words]
            segments.append(msgspec.structs.replace(
                s, id=len(segments), start=round(s.start + offset, 3), end=round(s.end + offset, 3), words=words
            ))
    first = parts[0][1]
    speech = sum(t.speech_duration for _, t in parts)
    weights = [t.speech_duration for _, t in parts]
    confidence = (
        sum(t.confidence * w for (_, t), w in zip(parts, weights)) / speech if speech else first.confidence
    )
    return Transcript(
        source=source, duration=round(duration, 3), language=first.language,
        language_probability=first.language_probability, segments=segments, model=first.model,
        speech_duration=round(speech, 3), confidence=round(confidence, 4), options=first.options,
    )
