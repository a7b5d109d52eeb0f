"""Where the diarizer's 10-s segmentation chunks lie (``segmentation.chunk_starts``): a grid over
speech that runs on, one chunk centred on a short stretch of speech between silences."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.pipeline.diarize.segmentation import chunk_starts
from iam_cluster.pipeline.types import SAMPLE_RATE

SIZE, HOP = 10 * SAMPLE_RATE, int(7.5 * SAMPLE_RATE)


def _running(length_s: float, speech):
    starts, active = chunk_starts(int(length_s * SAMPLE_RATE), SIZE, HOP, speech)
    assert starts == sorted(set(starts)) and len(active) == len(starts)
    return [s / SAMPLE_RATE for s, on in zip(starts, active) if on]


def _covered(running, speech) -> bool:
    """Every instant of speech lies inside some chunk that runs."""
    return all(any(s <= t <= s + SIZE / SAMPLE_RATE + 1 / SAMPLE_RATE for s in running)
               for a, b in speech for t in np.linspace(a, b, 50))


def test_without_speech_regions_every_grid_chunk_runs():
    starts, active = chunk_starts(60 * SAMPLE_RATE, SIZE, HOP)
    assert [s / SAMPLE_RATE for s in starts] == [0.0, 7.5, 15.0, 22.5, 30.0, 37.5, 45.0, 50.0]
    assert active.all()


def test_a_short_stretch_between_silences_gets_one_centred_chunk():
    """3 s of speech at 20-23 s touches the grid's chunks at 15 and 22.5 s: one chunk at 16.5 s
    sees all of it, in its middle."""
    assert _running(60, [(20.0, 23.0)]) == [16.5]


def test_speech_that_runs_on_keeps_the_grid():
    speech = [(3.0, 9.0), (10.0, 31.0), (33.0, 47.0)]
    assert _running(60, speech) == [0.0, 7.5, 15.0, 22.5, 30.0, 37.5, 45.0]


def test_a_chunk_another_stretch_needs_is_kept():
    """Speech at 20-23 s and more from 26 s: within a hop of each other, one island on the grid."""
    assert _running(60, [(20.0, 23.0), (26.0, 40.0)]) == [15.0, 22.5, 30.0, 37.5]


@pytest.mark.parametrize("seed", range(20))
def test_every_instant_of_speech_is_in_a_running_chunk_and_no_more_chunks_run(seed):
    rng = np.random.default_rng(seed)
    length = float(rng.uniform(5, 300))
    speech, t = [], float(rng.uniform(0, 5))
    while t < length - 0.5:
        end = min(length, t + float(rng.uniform(0.3, 15)))
        speech.append((t, end))
        t = end + float(rng.choice([rng.uniform(0.1, 2), rng.uniform(8, 60)]))
    running = _running(length, speech)
    assert _covered(running, speech)
    grid, active = chunk_starts(int(length * SAMPLE_RATE), SIZE, HOP)
    touching = sum(any(a * SAMPLE_RATE < s + SIZE and b * SAMPLE_RATE > s for a, b in speech) for s in grid)
    assert len(running) <= touching
    assert all(0 <= s <= max(0.0, length - SIZE / SAMPLE_RATE) + 1e-9 for s in running)
