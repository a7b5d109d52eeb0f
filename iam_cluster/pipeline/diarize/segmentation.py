"""Speech, overlap and local speakers for diarization: segmentation-3.0 on sliding 10-s chunks.

The ASR's VAD is tuned to feed Whisper; diarization needs every instant of speech, quiet far-field
talk included, so it runs its own detector on the level-normalised recording
(``iam_cluster.pipeline.level``, as the VAD and the ASR see it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from iam_cluster.pipeline.diarize.threads import in_threads, spans
from iam_cluster.pipeline.types import SAMPLE_RATE, ProgressHook, no_progress

CHUNK_SECONDS = 10.0
#: Fewest chunks worth a thread of their own (about a minute of audio at the usual steps).
MIN_THREAD_CHUNKS = 6


@dataclass
class Segmentation:
    """Frame-wise results on one grid (``step`` seconds apart, first frame centred at ``start``).

    Attributes:
        speech: probability that someone speaks, averaged over the chunks covering each frame.
        overlap: probability that two people speak at once, averaged likewise.
        local: per chunk, hard activity ``(chunks, frames, 3)`` of its three local speakers.
        chunk_frames: index on the global grid of each chunk's first frame.
    """

    speech: np.ndarray
    overlap: np.ndarray
    local: np.ndarray
    chunk_frames: np.ndarray
    start: float
    step: float

    def times(self, frames: np.ndarray) -> np.ndarray:
        return self.start + np.asarray(frames) * self.step


def _powerset(classes: int = 3, per_frame: int = 2) -> np.ndarray:
    rows = [set(c) for size in range(per_frame + 1) for c in combinations(range(classes), size)]
    return np.array([[k in r for k in range(classes)] for r in rows], np.float32)


class Segmenter:
    """Sliding-window segmentation-3.0.

    Args:
        step: seconds between chunk starts (10-s chunks; smaller steps average more views).
        device: torch device.
        batch_size: chunks per forward pass (default: 4 in onnxruntime, 16 in torch). A 10-s
            chunk's first convolution outputs 5 MB; in batches of 4 rather than 16 two threads
            segmented the dev meeting at 12.2-12.4 ms a chunk against 13.8-15.7 (2-core Intel Xeon).
        workers: forward passes run at once (Python threads; see ``threads.py``).
        cache_dir: where the CPU's onnxruntime copy of the model is exported once (None: torch).
    """

    def __init__(self, step: float = 2.5, device: str = "cpu", batch_size: int | None = None, workers: int = 1,
                 cache_dir: Path | None = None) -> None:
        from iam_cluster.pipeline.diarize.models import segmentation_model, segmentation_session

        self.step = step
        self.workers = workers
        self.model, geometry = segmentation_model(device)
        self.session = segmentation_session(cache_dir) if device == "cpu" and cache_dir is not None else None
        self.batch_size = batch_size or (4 if self.session is not None else 16)
        self.device = device
        self.frame_step = geometry["frame_step"]
        self.frame_start = geometry["frame_start"] + geometry["frame_duration"] / 2
        self.frames = self.model.sincnet.num_frames(int(CHUNK_SECONDS * SAMPLE_RATE))  # per chunk
        self.mapping = _powerset()

    def __call__(self, samples: np.ndarray, hook: ProgressHook = no_progress,
                 speech: Sequence[tuple[float, float]] | None = None) -> Segmentation:
        """Segment ``samples`` (level-normalised). ``speech``: ``(start, end)`` seconds where a
        detector heard something; chunks that overlap none of it are not run (they count as not
        looked at, and their frames as silence). None: every chunk runs."""
        import torch

        size = int(CHUNK_SECONDS * SAMPLE_RATE)
        starts, active = chunk_starts(len(samples), size, int(self.step * SAMPLE_RATE), speech)
        padded = np.pad(samples, (0, max(0, size - len(samples))))
        run = [s for s, on in zip(starts, active) if on]

        def forward(span: tuple[int, int]) -> np.ndarray:
            batch = np.stack([padded[s : s + size] for s in run[span[0] : span[1]]])
            if self.session is not None:
                return np.exp(self.session.run(None, {"waveform": batch[:, None]})[0])
            with torch.inference_mode():  # per thread
                return self.model(torch.from_numpy(batch)[:, None].to(self.device)).exp().cpu().numpy()

        probs = np.zeros((len(starts), self.frames, len(self.mapping)), np.float32)
        probs[..., 0] = 1.0  # chunks not run: nobody talks
        done = []
        batches = spans(len(run), self.batch_size, self.workers, MIN_THREAD_CHUNKS)
        hook("segmentation", 0, len(run))
        for (_, end), p in zip(batches, in_threads(forward, batches, self.workers)):
            done.append(p)
            hook("segmentation", end, len(run))
        if done:
            probs[active] = np.concatenate(done)  # (chunks, frames, 7)
        local = self.mapping[probs.argmax(-1)]  # (chunks, frames, 3)
        sizes = self.mapping.sum(1)
        offsets = np.rint(np.array(starts) / SAMPLE_RATE / self.frame_step).astype(int)
        total = min(offsets[-1] + self.frames, int(np.ceil(len(samples) / SAMPLE_RATE / self.frame_step)))
        return Segmentation(
            speech=_aggregate(1.0 - probs[active, :, 0], offsets[active], total),
            overlap=_aggregate(probs[active][..., sizes == 2].sum(-1), offsets[active], total),
            local=local,
            chunk_frames=offsets,
            start=self.frame_start,
            step=self.frame_step,
        )


def chunk_starts(length: int, size: int, hop: int,
                 speech: Sequence[tuple[float, float]] | None = None) -> tuple[list[int], np.ndarray]:
    """First samples of the ``size``-sample chunks to segment ``length`` samples with, in order, and
    which of them run.

    The chunks lie on a grid ``hop`` apart, the last one aligned to the end. Given ``speech``
    (``(start, end)`` seconds), a chunk runs only where it overlaps some. And an *island*, speech
    that fits in one chunk with no other speech within ``hop`` of it, which the grid would give two
    chunks, gets one chunk centred on it instead (when no chunk of its is needed for other speech):
    read clips between silences of 8-45 s took 29 chunks, now 14; speech that runs on keeps its grid.
    """
    last = max(0, length - size)
    starts = list(range(0, last + 1, hop))
    if last - starts[-1] > min(hop // 2, size - hop):
        starts.append(last)  # the tail gets a chunk of its own, aligned to the end
    else:
        starts[-1] = last  # a few samples past the grid: shift the last chunk, don't repeat it
    if speech is None:
        return starts, np.ones(len(starts), bool)
    islands: list[list[int]] = []
    for a, b in sorted((int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)) for a, b in speech):
        if islands and a - islands[-1][1] < hop:
            islands[-1][1] = max(islands[-1][1], b)
        else:
            islands.append([a, b])
    touched = [{k for k, (a, b) in enumerate(islands) if a < s + size and b > s} for s in starts]
    alone = {k for k, (a, b) in enumerate(islands) if b - a <= size
             and sum(k in t for t in touched) >= 2 and all(t <= {k} for t in touched if k in t)}
    active = {s: any(k not in alone for k in t) for s, t in zip(starts, touched)}
    for k in sorted(alone):
        a, b = islands[k]
        active[min(max(0, (a + b) // 2 - size // 2), last)] = True
    order = sorted(active)
    return order, np.array([active[s] for s in order])


def _aggregate(values: np.ndarray, offsets: np.ndarray, total: int) -> np.ndarray:
    """Mean over chunks of per-chunk frame values, weighted by a Hamming window (pyannote's way:
    a chunk's edges see less context than its middle); frames no chunk covers are 0."""
    frames = values.shape[1]
    weight = np.hamming(frames) + 1e-6
    acc, norm = np.zeros(total), np.zeros(total)
    for value, offset in zip(values, offsets):
        n = min(frames, total - offset)
        acc[offset : offset + n] += value[:n] * weight[:n]
        norm[offset : offset + n] += weight[:n]
    return acc / np.maximum(norm, 1e-9)


def regions(active: np.ndarray, seg: Segmentation, min_on: float = 0.1, min_off: float = 0.1):
    """``(start, end)`` seconds of runs of ``active`` frames; gaps under ``min_off`` are filled,
    then runs under ``min_on`` dropped."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    runs = [[a, b] for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and (a - merged[-1][1]) * seg.step < min_off:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    half = seg.step / 2
    out = [(max(0.0, float(seg.times(a)) - half), float(seg.times(b - 1)) + half) for a, b in merged]
    return [(a, b) for a, b in out if b - a >= min_on]
