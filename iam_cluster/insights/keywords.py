"""Keywords and key phrases with YAKE (statistical, single document; yake-rust, MIT, stop words built in)."""

from __future__ import annotations

import functools
import re
from collections import defaultdict

from iam_cluster.insights.types import Keyword, Sentence

#: Languages yake-rust has stop words for (it aborts the process on any other code, so check first).
LANGUAGES = frozenset(
    "ar bg da de el en es et fa fi fr hi hr hu hy id it ja lt lv nl no pl pt ro ru sk sl sv tr uk zh".split()
)
#: Spoken English carries fillers and back-channels that written stop-word lists lack.
SPOKEN_EN = frozenset("""
    yeah yes yep yup nope no okay ok um uh uhm umm hmm mm mhm ah oh wow hey hi bye like gonna wanna gotta kinda
    sorta right really thing things stuff lot lots bit guess think know mean just well sure good great thanks
    thank basically actually maybe probably literally totally pretty kind sort going get got let say said tell
    told lets gets getting doing done stuff guys
""".split())
#: Speakers with fewer words than this get no keywords of their own.
MIN_SPEAKER_WORDS = 40


@functools.cache
def stopwords(language: str) -> frozenset[str]:
    """YAKE's stop words for the language (with spoken fillers for English); empty if it has none."""
    if not supported(language):
        return frozenset()
    from yake_rust import Yake

    words = frozenset(Yake(language=language).stopwords)
    return words | SPOKEN_EN if language == "en" else words


@functools.cache
def _extractor(language: str, ngrams: int):
    from yake_rust import Yake

    return Yake(stopwords=set(stopwords(language)), ngrams=ngrams, only_alphanumeric_and_hyphen=True,
                minimum_chars=3 if language == "en" else 2)


def supported(language: str) -> bool:
    return language in LANGUAGES


def _count(phrase: str, text: str) -> int:
    return len(re.findall(r"(?<!\w)" + r"\s+".join(map(re.escape, phrase.split())) + r"(?!\w)", text,
                          flags=re.IGNORECASE))


def _distinct(ranked: list[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    """The first ``n`` phrases none of whose words all lie inside a phrase ranked above, or vice versa
    ("ready", "begin" after "ready to begin")."""
    kept: list[tuple[str, float]] = []
    seen: list[set[str]] = []
    for phrase, score in ranked:
        words = set(phrase.lower().split())
        if any(words <= other or other <= words for other in seen):
            continue
        kept.append((phrase, score))
        seen.append(words)
        if len(kept) == n:
            break
    return kept


def extract(text: str, language: str, n: int, ngrams: int = 3) -> list[Keyword]:
    """The ``n`` best keywords of ``text``, best first.

    ``score`` is the best keyword's YAKE score divided by this one's (YAKE scores fall as
    importance rises), so the first keyword scores 1 and the rest less.

    Args:
        text: Running text (sentences joined).
        language: An ISO 639-1 code from ``LANGUAGES``.
        n: How many keywords at most.
        ngrams: Longest phrase, in words.
    """
    if n <= 0 or not text.strip() or not supported(language):
        return []
    best = _distinct(_extractor(language, ngrams).get_n_best(text, n=3 * n), n)
    if not best:
        return []
    top = max(best[0][1], 1e-12)
    out = []
    for phrase, score in best:
        out.append(Keyword(text=phrase, score=round(min(1.0, top / max(score, 1e-12)), 4),
                           count=max(1, _count(phrase, text))))
    return out


def per_speaker(sentences: list[Sentence], language: str, n: int, ngrams: int = 3) -> dict[str, list[str]]:
    """Each talkative speaker's own top keywords (their sentences taken as one document)."""
    texts: dict[str, list[str]] = defaultdict(list)
    for s in sentences:
        texts[s.speaker].append(s.text)
    out = {}
    for speaker, parts in texts.items():
        text = " ".join(parts)
        if len(text.split()) >= MIN_SPEAKER_WORDS:
            out[speaker] = [k.text for k in extract(text, language, n, ngrams)]
    return out
