"""Embedded diarizer (offline, CPU): resemblyzer speaker embeddings on sliding windows inside the
VAD's speech regions, clustered with scikit-learn.

Each instant of speech gets exactly one label: a window's embedding speaks for the stretch around
its centre (half-way to its neighbours' centres), so overlapping windows never double-count time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from iam_cluster.pipeline.diarize import check_speaker_counts
from iam_cluster.pipeline.types import (
    SAMPLE_RATE,
    Audio,
    Diarization,
    ProgressHook,
    SpeechRegion,
    Turn,
    no_progress,
)

_FRAMES_PER_SECOND = 100  # resemblyzer's mel hop is 10 ms
_WINDOW_FRAMES = 160  # resemblyzer's partial utterance: 1.6 s
_LOCK = threading.Lock()
_ENCODERS: dict[str, object] = {}


def voice_encoder(device: str = "cpu"):
    """resemblyzer's VoiceEncoder (weights ship inside the package), loaded once per device."""
    with _LOCK:
        if device not in _ENCODERS:
            from resemblyzer import VoiceEncoder

            _ENCODERS[device] = VoiceEncoder(device, verbose=False)
        return _ENCODERS[device]


class EmbeddedDiarizer:
    """Speaker turns from resemblyzer d-vectors and agglomerative clustering.

    Args:
        step: seconds between window centres (the time resolution of speaker changes).
        threshold: cosine distance under which average-linkage clusters merge when the number
            of speakers is not given.
        smooth: width, in windows, of the majority filter that removes one-window flips.
        min_speaker_seconds: an automatically found speaker with less speech than this is
            folded into the nearest other speaker.
        device: torch device for the encoder.
        batch_size: windows per encoder forward pass.
    """

    def __init__(
        self,
        step: float = 0.4,
        threshold: float = 0.3,
        smooth: int = 5,
        min_speaker_seconds: float = 2.0,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.step = step
        self.threshold = threshold
        self.smooth = smooth
        self.min_speaker_seconds = min_speaker_seconds
        self.device = device
        self.batch_size = batch_size

    def __call__(
        self,
        audio: Audio,
        speech_regions: Sequence[SpeechRegion],
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook = no_progress,
    ) -> Diarization:
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        regions = [r for r in speech_regions if r.duration > 0.2]
        if not regions:
            return Diarization(turns=[])
        slots, region_of, mels = self._windows(audio, regions)
        embeddings = self._embed(mels, hook)
        labels = self._cluster(embeddings, slots, num_speakers, min_speakers, max_speakers)
        labels = _majority_smooth(labels, region_of, self.smooth)
        return _turns(slots, region_of, labels, embeddings)

    def _windows(self, audio: Audio, regions: Sequence[SpeechRegion]):
        """Mel windows inside each region and the stretch of time each one labels."""
        from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

        step = max(1, int(round(self.step * _FRAMES_PER_SECOND)))
        slots, region_of, mels = [], [], []
        for index, region in enumerate(regions):
            samples = audio.samples[int(region.start * SAMPLE_RATE) : int(region.end * SAMPLE_RATE)]
            if len(samples) == 0 or not np.any(samples):
                continue
            mel = wav_to_mel_spectrogram(normalize_volume(samples, -30, increase_only=True))
            n = len(mel)
            if n <= _WINDOW_FRAMES:
                starts = [0]
                mel = np.resize(mel, (_WINDOW_FRAMES, mel.shape[1]))  # loop a short turn to 1.6 s
            else:
                starts = list(range(0, n - _WINDOW_FRAMES + 1, step))
                if starts[-1] != n - _WINDOW_FRAMES:
                    starts.append(n - _WINDOW_FRAMES)
            centres = [region.start + (s + min(n, _WINDOW_FRAMES) / 2) / _FRAMES_PER_SECOND for s in starts]
            bounds = [region.start, *[(a + b) / 2 for a, b in zip(centres, centres[1:])], region.end]
            for k, s in enumerate(starts):
                mels.append(mel[s : s + _WINDOW_FRAMES])
                slots.append((bounds[k], bounds[k + 1]))
                region_of.append(index)
        return np.array(slots), np.array(region_of), np.stack(mels) if mels else np.zeros((0, 160, 40))

    def _embed(self, mels: np.ndarray, hook: ProgressHook) -> np.ndarray:
        import torch

        encoder = voice_encoder(self.device)
        out = []
        hook("embeddings", 0, len(mels))
        with torch.inference_mode():
            for i in range(0, len(mels), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(mels[i : i + self.batch_size])).to(encoder.device)
                out.append(encoder(batch).cpu().numpy())
                hook("embeddings", min(i + self.batch_size, len(mels)), len(mels))
        return np.concatenate(out) if out else np.zeros((0, 256), np.float32)

    def _cluster(self, embeddings, slots, num, low, high) -> np.ndarray:
        """Average-linkage clustering on cosine distance, then nearest-centroid refinement."""
        from sklearn.cluster import AgglomerativeClustering

        n = len(embeddings)
        if n == 1 or num == 1:
            return np.zeros(n, dtype=int)
        if num is not None:
            k = min(num, n)
        else:
            ahc = AgglomerativeClustering(
                n_clusters=None, metric="cosine", linkage="average", distance_threshold=self.threshold
            ).fit(embeddings)
            labels = _fold_small(ahc.labels_, embeddings, slots, self.min_speaker_seconds)
            k = len(np.unique(labels))
            k = max(k, low or 1)
            k = min(k, high or k, n)
        if k == 1:
            return np.zeros(n, dtype=int)
        labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit(embeddings).labels_
        return _refine(labels, embeddings)


def _fold_small(labels: np.ndarray, embeddings: np.ndarray, slots: np.ndarray, min_seconds: float) -> np.ndarray:
    """Merge clusters holding less than ``min_seconds`` of speech into their nearest big cluster."""
    durations = slots[:, 1] - slots[:, 0]
    sizes = {c: durations[labels == c].sum() for c in np.unique(labels)}
    big = [c for c, s in sizes.items() if s >= min_seconds] or [max(sizes, key=sizes.get)]
    centroids = _centroids(labels, embeddings, big)
    out = labels.copy()
    for c in sizes:
        if c not in big:
            members = labels == c
            out[members] = big[int(np.argmax(centroids @ embeddings[members].mean(0)))]
    return np.unique(out, return_inverse=True)[1]


def _centroids(labels: np.ndarray, embeddings: np.ndarray, clusters) -> np.ndarray:
    c = np.stack([embeddings[labels == k].mean(0) for k in clusters])
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _refine(labels: np.ndarray, embeddings: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Reassign windows to the nearest centroid (cosine), a few k-means rounds from AHC's start."""
    for _ in range(rounds):
        clusters = np.unique(labels)
        new = clusters[np.argmax(embeddings @ _centroids(labels, embeddings, clusters).T, axis=1)]
        if len(np.unique(new)) < len(clusters) or np.array_equal(new, labels):
            break
        labels = new
    return np.unique(labels, return_inverse=True)[1]


def _majority_smooth(labels: np.ndarray, region_of: np.ndarray, width: int) -> np.ndarray:
    """Within each region, replace each label by the most common one in a window around it."""
    if width <= 1:
        return labels
    out = labels.copy()
    half = width // 2
    for region in np.unique(region_of):
        idx = np.flatnonzero(region_of == region)
        seq = labels[idx]
        for j in range(len(seq)):
            values, counts = np.unique(seq[max(0, j - half) : j + half + 1], return_counts=True)
            if counts.max() > 1:
                best = values[counts == counts.max()]
                out[idx[j]] = seq[j] if seq[j] in best else best[0]
    return out


def _turns(slots: np.ndarray, region_of: np.ndarray, labels: np.ndarray, embeddings: np.ndarray) -> Diarization:
    """Join runs of equal labels inside a region into turns; each turn gets its mean embedding."""
    turns, vectors = [], []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start] or region_of[i] != region_of[start]:
            v = embeddings[start:i].mean(0)
            turns.append(Turn(round(float(slots[start, 0]), 3), round(float(slots[i - 1, 1]), 3), f"S{labels[start]}"))
            vectors.append((v / np.linalg.norm(v)).round(5).tolist())
            start = i
    return Diarization(turns=turns, embeddings=vectors)
