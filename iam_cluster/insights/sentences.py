"""Sentences of a transcript, each with its speaker and times, split by pysbd's rules (no data download)."""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator

from iam_cluster.insights.types import UNKNOWN_SPEAKER, Sentence
from iam_cluster.pipeline.types import Segment, Transcript

#: Segments of one speaker further apart than this (seconds) never share a sentence.
MAX_GAP = 2.0
#: A block handed to pysbd closes at the first segment ending a sentence past this many characters
#: (pysbd's abbreviation pass grows faster than linearly with its input's length).
BLOCK_CHARS = 600
_ENDS = (".", "?", "!", "…", "。", "？", "！")
#: pysbd's languages; others are split with the English rules (punctuation still ends sentences).
PYSBD_LANGUAGES = frozenset(
    "am ar bg da de el en es fa fr hi hy it ja kk mr my nl pl ru sk ur zh".split()
)


@functools.cache
def _segmenter(language: str):
    import pysbd

    return pysbd.Segmenter(language=language if language in PYSBD_LANGUAGES else "en", clean=False)


def speaker_of(segment: Segment) -> str:
    return segment.speaker or UNKNOWN_SPEAKER


def runs(transcript: Transcript, max_gap: float = MAX_GAP) -> Iterator[list[Segment]]:
    """Blocks of consecutive text-bearing segments of one speaker.

    A block ends where the speaker changes, at a pause longer than ``max_gap``, and after a
    segment that ends a sentence once the block holds ``BLOCK_CHARS`` characters.
    """
    run: list[Segment] = []
    size = 0
    for seg in transcript.segments:
        text = seg.text.strip()
        if not text:
            continue
        if run and (speaker_of(seg) != speaker_of(run[-1]) or seg.start - run[-1].end > max_gap
                    or (size >= BLOCK_CHARS and run[-1].text.rstrip().endswith(_ENDS))):
            yield run
            run, size = [], 0
        run.append(seg)
        size += len(text) + 1
    if run:
        yield run


class _Piece:
    """A span of a run's text (a word, or a whole segment) and the time it was spoken."""

    __slots__ = ("a", "b", "start", "end", "exact")

    def __init__(self, a: int, b: int, start: float, end: float, exact: bool) -> None:
        self.a, self.b, self.start, self.end, self.exact = a, b, start, end, exact

    def time_at(self, offset: int) -> float:
        """Time at a character offset inside the piece, interpolated along its span."""
        if self.b <= self.a:
            return self.start
        frac = min(1.0, max(0.0, (offset - self.a) / (self.b - self.a)))
        return self.start + frac * (self.end - self.start)


def _layout(run: list[Segment]) -> tuple[str, list[_Piece]]:
    """The run's text and its pieces: words when every segment has them, else whole segments.

    Whisper's words carry their leading space, so they are joined as they are (no space is added
    for languages written without them); segments are joined with one space.
    """
    exact = all(seg.words for seg in run)
    if exact:
        items = [(w.word, w.start, w.end) for seg in run for w in seg.words]
    else:
        items = [((" " if i else "") + seg.text.strip(), seg.start, seg.end) for i, seg in enumerate(run)]
    pieces: list[_Piece] = []
    pos = 0
    for text, start, end in items:
        pieces.append(_Piece(pos, pos + len(text), start, max(start, end), exact))
        pos += len(text)
    return "".join(t for t, _, _ in items), pieces


def _spans(text: str, language: str) -> Iterator[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (stripped, non-empty)."""
    cursor = 0
    for sent in _segmenter(language).segment(text):
        sent = sent.strip()
        if not sent:
            continue
        at = text.find(sent, cursor)
        if at < 0:  # pysbd altered the text (it should not with clean=False): fall back to the cursor
            at = cursor
        cursor = at + len(sent)
        yield at, cursor


def _time_span(pieces: list[_Piece], ends: list[int], a: int, b: int) -> tuple[float, float]:
    """Start and end time of the characters ``[a, b)``; ``ends`` are the pieces' ends, ascending."""
    i = bisect.bisect_right(ends, a)  # the first piece ending after a
    j = i
    while j < len(pieces) and pieces[j].a < b:
        j += 1
    if j == i:
        return pieces[-1].start, pieces[-1].end
    first, last = pieces[i], pieces[j - 1]
    start = first.start if first.exact or first.a >= a else first.time_at(a)
    end = last.end if last.exact or last.b <= b else last.time_at(b)
    return round(start, 3), round(max(start, end), 3)


_SPACES = re.compile(r"\s+")


def split_sentences(transcript: Transcript) -> list[Sentence]:
    """The transcript's sentences in spoken order, each within one speaker's run of segments.

    Times come from the word timestamps when every segment of a run has them; otherwise they are
    interpolated inside each segment by character position.

    Args:
        transcript: The transcript, with or without speakers and word timestamps.

    Returns:
        Sentences with consecutive ``index`` values from 0.
    """
    language = (transcript.language or "en").split("-")[0].lower()
    out: list[Sentence] = []
    for run in runs(transcript):
        text, pieces = _layout(run)
        ends = [p.b for p in pieces]
        speaker = speaker_of(run[0])
        for a, b in _spans(text, language):
            start, end = _time_span(pieces, ends, a, b)
            out.append(Sentence(index=len(out), start=start, end=end, speaker=speaker,
                                text=_SPACES.sub(" ", text[a:b]).strip()))
    return out
