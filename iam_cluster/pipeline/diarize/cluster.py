"""Speaker clustering of window embeddings, with the number of speakers found from the data.

Spectral clustering on a k-nearest-neighbour cosine affinity; the neighbourhood size and the
speaker count come from the normalised maximum eigengap (NME-SC, Park et al., IEEE SPL 2019):
for each candidate k the largest gap of the Laplacian's spectrum is measured, k is the one with
the best ratio of k to that gap, and the count is where the gap lies. Nothing here is in seconds,
so it does not care whether a recording lasts 30 s or an hour.
"""

from __future__ import annotations

import numpy as np

METHODS = ("ahc", "spectral")

#: Fewer windows than this are one speaker: too few to tell a spectrum's gaps apart.
MIN_WINDOWS = 6


def spectral_labels(
    x: np.ndarray,
    num: int | None = None,
    low: int | None = None,
    high: int | None = None,
    max_speakers: int = 20,
) -> np.ndarray:
    """Cluster L2-normalised rows of ``x``; ``num`` imposes the count, ``low``/``high`` bound it."""
    n = len(x)
    if num == 1 or n < max(2, num or 0) or (num is None and n < MIN_WINDOWS):
        return np.zeros(n, dtype=int)
    affinity = np.clip(x @ x.T, -1.0, 1.0)
    top = min(n - 1, max_speakers, high or max_speakers)
    best = None
    for k in _neighbour_counts(n):
        values, vectors = _spectrum(_prune(affinity, k))
        gaps = np.diff(values[: top + 1]) / max(values[-1], 1e-9)
        lo = (low or 1) - 1
        if num is not None:
            count = num
        else:
            count = int(np.argmax(gaps[lo:]) + lo + 1) if len(gaps) > lo else max(1, low or 1)
        ratio = k / max(gaps[count - 1] if count - 1 < len(gaps) else 0.0, 1e-9)
        if best is None or ratio < best[0]:
            best = (ratio, count, vectors)
    _, count, vectors = best
    if count <= 1:
        return np.zeros(n, dtype=int)
    return _kmeans(vectors[:, :count], count)


def _neighbour_counts(n: int) -> list[int]:
    """Candidate neighbourhood sizes: from 2 up to a quarter of the windows."""
    top = max(2, n // 4)
    return sorted({int(round(v)) for v in np.geomspace(2, top, num=min(top - 1, 12))})


def _prune(affinity: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's ``k`` most similar entries (binarised), symmetrised."""
    out = np.zeros_like(affinity)
    order = np.argsort(-affinity, axis=1)[:, : k + 1]  # +1: the row itself
    np.put_along_axis(out, order, 1.0, axis=1)
    np.fill_diagonal(out, 0.0)
    return 0.5 * (out + out.T)


def _spectrum(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    laplacian = np.diag(a.sum(1)) - a
    return np.linalg.eigh(laplacian)


def _kmeans(v: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(v)


def ahc_labels(x: np.ndarray, threshold: float, num: int | None = None) -> np.ndarray:
    """Average-linkage clustering on cosine distance, stopped at ``threshold`` or at ``num``."""
    from sklearn.cluster import AgglomerativeClustering

    if len(x) < 2 or num == 1:
        return np.zeros(len(x), dtype=int)
    return AgglomerativeClustering(
        n_clusters=num, metric="cosine", linkage="average", distance_threshold=None if num else threshold
    ).fit(x).labels_


def centroids(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cluster ids, L2-normalised mean embedding of each)``."""
    ids = np.unique(labels)
    c = np.stack([x[labels == k].mean(0) for k in ids])
    return ids, c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-9)


def merge_similar(x: np.ndarray, labels: np.ndarray, min_similarity: float, low: int = 1) -> np.ndarray:
    """Merge the two clusters with the most similar centroids while their cosine similarity is
    at least ``min_similarity`` (one voice split in two by the spectral step), keeping ``low``."""
    labels = labels.copy()
    while True:
        ids, c = centroids(x, labels)
        if len(ids) <= max(1, low):
            return labels
        sim = c @ c.T
        np.fill_diagonal(sim, -np.inf)
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[i, j] < min_similarity:
            return labels
        labels[labels == ids[j]] = ids[i]


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    order = {v: i for i, v in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[v] for v in labels.tolist()], dtype=int)


def cluster_speakers(
    x: np.ndarray,
    method: str,
    similarity: float,
    num: int | None = None,
    low: int | None = None,
    high: int | None = None,
) -> np.ndarray:
    """Centroids (L2-normalised, one row per speaker) of the speakers among embeddings ``x``.

    ``ahc`` stops merging where clusters are less than ``similarity`` alike; ``spectral`` takes
    the eigengap's count, then merges clusters at least ``similarity`` alike. A count given
    (``num``) or bounded (``low``/``high``) is imposed on either.
    """
    if method not in METHODS:
        from iam_cluster.errors import ConfigError

        raise ConfigError(f"unknown clustering {method!r}; choose from {', '.join(METHODS)}")
    n = len(x)
    if num is not None:
        labels = ahc_labels(x, 1 - similarity, min(num, n)) if method == "ahc" else spectral_labels(x, num=min(num, n))
        return centroids(x, labels)[1]
    if method == "ahc":
        labels = ahc_labels(x, 1 - similarity)
    else:
        labels = merge_similar(x, spectral_labels(x, low=low, high=high), similarity, low or 1)
    found = len(np.unique(labels))
    if low is not None and found < low and n >= low:
        labels = ahc_labels(x, 1 - similarity, low)
    elif high is not None and found > high:
        labels = ahc_labels(x, 1 - similarity, high)
    return centroids(x, labels)[1]
