"""Embedded diarizer (offline, CPU): resemblyzer speaker embeddings on sliding windows inside the
VAD's speech regions, clustered with scikit-learn (agglomerative, complete linkage).

Each instant of speech gets exactly one label: a window's embedding speaks for the stretch around
its centre (half-way to its neighbours' centres), so overlapping windows never double-count time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from iam_cluster.errors import ConfigError
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
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as exc:
                raise ConfigError(
                    "the embedded diarizer needs the diarize extra: pip install 'iam-cluster[diarize]' "
                    "&& pip install --no-deps resemblyzer==0.1.4"
                ) from exc

            _ENCODERS[device] = VoiceEncoder(device, verbose=False)
        return _ENCODERS[device]


class EmbeddedDiarizer:
    """Speaker turns from resemblyzer d-vectors and agglomerative clustering.

    Defaults were tuned on the development AMI excerpts, ``sample.wav`` and single-speaker
    clips together (``benchmarks/der.py``), not on one file.

    Args:
        step: seconds between window centres (the time resolution of speaker changes).
        segment_windows: consecutive windows averaged into one segment embedding for clustering.
        threshold: cosine distance under which complete-linkage clusters of segments merge when
            the number of speakers is not given.
        smooth: width, in windows, of the majority filter that removes one-window flips.
        min_speaker_seconds: when counting speakers automatically, a cluster with less speech
            than this is not a speaker of its own.
        device: torch device for the encoder.
        batch_size: windows per encoder forward pass.
    """

    def __init__(
        self,
        step: float = 0.4,
        segment_windows: int = 5,
        threshold: float = 0.3,
        smooth: int = 5,
        min_speaker_seconds: float = 4.0,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.step = step
        self.segment_windows = segment_windows
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
        if len(mels) == 0:  # regions of digital silence
            return Diarization(turns=[])
        embeddings = self._embed(mels, hook)
        labels = self._cluster(embeddings, slots, region_of, num_speakers, min_speakers, max_speakers)
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

    def _cluster(self, embeddings, slots, region_of, num, low, high) -> np.ndarray:
        """Two stages: cluster ~2-s segment embeddings, then label each window by nearest centroid.

        Single 1.6-s windows are too noisy to cluster (far-field meetings merge speakers and
        split one voice in two); averaging a few consecutive windows first makes the clusters
        trustworthy, and going back to windows keeps the 0.4-s time resolution.
        """
        segment = _segments(region_of, self.segment_windows)
        count = segment.max() + 1
        seg_emb = _normalise(np.stack([embeddings[segment == k].mean(0) for k in range(count)]))
        durations = slots[:, 1] - slots[:, 0]
        seg_dur = np.array([durations[segment == k].sum() for k in range(count)])
        if count == 1 or num == 1:
            return np.zeros(len(embeddings), dtype=int)
        seg_labels, clusters = None, None
        if num is not None:
            k = min(num, count)
        else:
            seg_labels = _ahc(seg_emb, None, self.threshold)
            clusters = _big_clusters(seg_labels, seg_dur, self.min_speaker_seconds)
            k = min(max(len(clusters), low or 1), high or count, count)
        if k == 1:
            return np.zeros(len(embeddings), dtype=int)
        if clusters is None or k != len(clusters):
            seg_labels = _ahc(seg_emb, k, None)  # the count is imposed: keep every cluster
        else:
            # Small clusters (a cough, a burst of crosstalk) are absorbed by the nearest big one.
            seg_labels = np.argmax(seg_emb @ _centroids(seg_labels, seg_emb, clusters).T, axis=1)
        seg_labels = _refine(seg_labels, seg_emb)
        centroids = _centroids(seg_labels, seg_emb, np.unique(seg_labels))
        labels = np.argmax(embeddings @ centroids.T, axis=1)
        if len(np.unique(labels)) < len(centroids):  # a speaker vanished: keep the segment labels
            labels = seg_labels[segment]
        return labels


def _segments(region_of: np.ndarray, size: int) -> np.ndarray:
    """Segment index of each window: runs of ``size`` consecutive windows inside one region."""
    out = np.zeros(len(region_of), dtype=int)
    current, filled = -1, size
    for i, region in enumerate(region_of):
        if filled == size or (i and region != region_of[i - 1]):
            current, filled = current + 1, 0
        out[i] = current
        filled += 1
    return out


def _ahc(x: np.ndarray, n_clusters: int | None, threshold: float | None) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(
        n_clusters=n_clusters, metric="cosine", linkage="complete", distance_threshold=threshold
    ).fit(x).labels_


def _big_clusters(labels: np.ndarray, durations: np.ndarray, min_seconds: float) -> list[int]:
    """Clusters holding at least ``min_seconds`` of speech (the largest one at least)."""
    sizes = {c: durations[labels == c].sum() for c in np.unique(labels)}
    return [c for c, v in sizes.items() if v >= min_seconds] or [max(sizes, key=sizes.get)]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _centroids(labels: np.ndarray, embeddings: np.ndarray, clusters) -> np.ndarray:
    return _normalise(np.stack([embeddings[labels == k].mean(0) for k in clusters]))


def _refine(labels: np.ndarray, embeddings: np.ndarray, rounds: int = 3) -> np.ndarray:
    """A few k-means rounds (cosine) from the clustering's start; stops if a cluster would empty."""
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
