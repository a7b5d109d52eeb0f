"""Extractive summary: the most central sentences (LexRank over TF-IDF), kept apart by MMR, in spoken order."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from iam_cluster.insights.keywords import stopwords
from iam_cluster.insights.types import Sentence, SummarySentence

#: Sentences with fewer content words than this ("Yeah, okay.") are never picked.
MIN_CONTENT_WORDS = 4
#: PageRank damping: the chance of following a similarity edge rather than jumping anywhere.
DAMPING = 0.85
#: Maximal marginal relevance: weight of centrality against redundancy with what is already picked.
MMR_LAMBDA = 0.7


#: Languages written without spaces between words: compared by character bigrams.
UNSPACED = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
_TOKEN = re.compile(r"[^\W\d_](?:[\w'-]*\w)?")


def _terms(text: str, language: str, stopwords: frozenset[str]) -> list[str]:
    if language in UNSPACED:
        chars = [c for c in text if c.isalnum()]
        return [a + b for a, b in zip(chars, chars[1:])]
    return [t for t in _TOKEN.findall(text.lower()) if t not in stopwords and len(t) > 1]


def tfidf(texts: list[str], language: str = "en") -> np.ndarray:
    """L2-normalised TF-IDF rows, one per text: sublinear term frequency, smoothed IDF.

    Stop words (the keyword extractor's, with spoken fillers) are dropped, so sentences are
    compared on what they are about. A few hundred sentences need no sparse matrices.
    """
    stop = stopwords(language)
    docs = [_terms(t, language, stop) for t in texts]
    vocab = {term: i for i, term in enumerate(sorted({t for d in docs for t in d}))}
    matrix = np.zeros((len(texts), max(1, len(vocab))))
    for row, doc in enumerate(docs):
        for term, count in Counter(doc).items():
            matrix[row, vocab[term]] = 1.0 + math.log(count)
    df = np.count_nonzero(matrix, axis=0)
    matrix *= np.log((1 + len(texts)) / (1 + df)) + 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def lexrank(sim: np.ndarray, iterations: int = 100, tol: float = 1e-8) -> np.ndarray:
    """PageRank on the weighted sentence-similarity graph (continuous LexRank); scores sum to 1."""
    n = sim.shape[0]
    weights = sim.copy()
    np.fill_diagonal(weights, 0.0)
    out = weights.sum(axis=1, keepdims=True)
    # A sentence similar to nothing links to every sentence alike (no rank is lost).
    transition = np.where(out > 0, weights / np.where(out > 0, out, 1.0), 1.0 / n)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        nxt = (1 - DAMPING) / n + DAMPING * (transition.T @ rank)
        if np.abs(nxt - rank).sum() < tol:
            return nxt
        rank = nxt
    return rank


def summarize(sentences: list[Sentence], n: int, language: str = "en") -> list[SummarySentence]:
    """At most ``n`` sentences that carry the meeting, in the order they were spoken.

    Each sentence is a TF-IDF vector; LexRank scores how central it is to the whole conversation;
    then sentences are picked greedily by maximal marginal relevance so that two near-repeats are
    not both chosen. Sentences with fewer than ``MIN_CONTENT_WORDS`` content words are skipped.

    Args:
        sentences: The transcript's sentences (``split_sentences``).
        n: Most sentences to return.
        language: ISO 639-1 code of the transcript (English drops English stop words).

    Returns:
        Chosen sentences, by ``index``, with their centrality as ``score`` (largest is 1).
    """
    if n <= 0 or not sentences:
        return []
    vectors = tfidf([s.text for s in sentences], language)
    eligible = np.array([np.count_nonzero(v) >= MIN_CONTENT_WORDS for v in vectors])
    if not eligible.any():  # a very short meeting: take what has any content at all
        eligible = np.array([np.count_nonzero(v) > 0 for v in vectors])
    if not eligible.any():
        return []
    sim = np.clip(vectors @ vectors.T, 0.0, 1.0)
    rank = lexrank(sim)
    rank = np.where(eligible, rank, 0.0)
    rank = rank / rank.max()
    chosen: list[int] = []
    candidates = set(np.flatnonzero(eligible).tolist())
    while candidates and len(chosen) < n:
        def mmr(i: int) -> float:
            redundancy = max((sim[i, j] for j in chosen), default=0.0)
            return MMR_LAMBDA * rank[i] - (1 - MMR_LAMBDA) * redundancy

        best = max(sorted(candidates), key=mmr)
        chosen.append(best)
        candidates.discard(best)
    picked = set(chosen)
    return [SummarySentence(index=s.index, start=s.start, end=s.end, speaker=s.speaker, text=s.text,
                            score=round(float(rank[i]), 4))
            for i, s in enumerate(sentences) if i in picked]
