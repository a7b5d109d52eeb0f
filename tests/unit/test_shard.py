"""Cutting long recordings at silences."""

from __future__ import annotations

import numpy as np

from iam_cluster.pipeline.shard import shard
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio
from iam_cluster.pipeline.types import SpeechRegion as R


def audio(seconds: float) -> Audio:
    return Audio("a", np.zeros(int(seconds * SAMPLE_RATE), np.float32))


def test_short_recordings_stay_whole():
    (only,) = shard(audio(100), [R(1, 50), R(60, 90)], shard_seconds=300)
    assert only.offset == 0 and len(only.regions) == 2


def test_cuts_fall_between_regions_and_keep_every_region():
    regions = [R(i * 10.0, i * 10.0 + 8.0) for i in range(100)]  # 1000 s, pauses of 2 s
    shards = shard(audio(1000), regions, shard_seconds=300)
    assert len(shards) == 3
    kept = [(s.offset + r.start, s.offset + r.end) for s in shards for r in s.regions]
    assert kept == [(r.start, r.end) for r in regions]
    for s in shards:
        assert all(0 <= r.start < r.end <= s.audio.duration + 1e-6 for r in s.regions)
    assert [round(s.offset) for s in shards] == [0, 299, 599]
