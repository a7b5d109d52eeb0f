"""Chunking: pack speech regions into decoding windows of at most ``chunk_length`` seconds.

Whisper always encodes 30 s, padding shorter input with silence, so a window holding 3 s of
speech costs as much as one holding 30 s. Packing the speech of consecutive regions (of one
recording, or of many short recordings) into full windows is what makes short clips cheap.
Each piece keeps its place on its recording's timeline, so results map back exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import msgspec
import numpy as np

from iam_cluster.pipeline.types import Piece, Segment, SpeechRegion, Window, WindowText, Word


def split_long(region: SpeechRegion, max_length: float) -> list[SpeechRegion]:
    """Cut a region longer than ``max_length`` into equal parts (a guard; the VAD already caps)."""
    if region.duration <= max_length:
        return [region]
    n = int(region.duration // max_length) + 1
    step = region.duration / n
    return [SpeechRegion(region.start + i * step, min(region.end, region.start + (i + 1) * step)) for i in range(n)]


#: Silence between pieces of two different recordings in one window: Whisper ends a segment
#: there, and word times that stray into it are easy to tell (see ``placement``). Longer gaps
#: were measured (recall benchmark, issue 11): 2.0 s made the dev folder run equal to the alone
#: run (union 8.05 % against 9.20 % at 1.0 s) but its aligned word times strayed into the gaps,
#: so the checks doubted most pieces: 83 windows instead of 23 on the 120-clip folder (2x the
#: time); 1.5 s cost words in tests/integration/test_recall.py. Kept at 1.0 s until the placement
#: checks tolerate a longer gap.
RECORDING_GAP = 1.0


def pack(
    regions: Sequence[Sequence[SpeechRegion]],
    chunk_length: float = 30.0,
    gap: float = 0.2,
    across_recordings: bool = True,
    groups: Sequence[object] | None = None,
    recording_gap: float = RECORDING_GAP,
) -> list[Window]:
    """Greedily pack the regions of each recording, in order, into windows.

    Args:
        regions: per recording, its sorted speech regions.
        chunk_length: longest window, in seconds.
        gap: silence between two pieces of one recording inside a window.
        across_recordings: let one window hold pieces of several recordings.
        groups: per recording, a key (e.g. its language); recordings share a window only when
            their keys are equal.
        recording_gap: silence between pieces of two recordings (at least ``gap``).

    Returns:
        Windows in recording order; each recording's pieces appear in time order.
    """
    windows: list[Window] = []
    current: list[Piece] = []
    end = 0.0

    def flush() -> None:
        nonlocal current, end
        if current:
            windows.append(Window(pieces=tuple(current)))
        current, end = [], 0.0

    for rec, rec_regions in enumerate(regions):
        if current and (
            not across_recordings
            or (groups is not None and groups[rec] != groups[current[-1].recording])
        ):
            flush()
        need = sum(r.duration for r in rec_regions) + gap * max(0, len(rec_regions) - 1)
        if current and need <= chunk_length and end + max(gap, recording_gap) + need > chunk_length:
            flush()  # a recording that fits in one window is not split across two
        for region in rec_regions:
            for part in split_long(region, chunk_length):
                between = gap if current and current[-1].recording == rec else max(gap, recording_gap)
                offset = end + between if current else 0.0
                if current and offset + part.duration > chunk_length:
                    flush()
                    offset = 0.0
                current.append(Piece(recording=rec, start=part.start, end=part.end, offset=offset))
                end = offset + part.duration
    flush()
    return windows


#: Seconds of audio one aligned word can account for (see ``placement``).
MAX_WORD_SPAN = 1.0
#: Longest silence (seconds, on the recording's timeline) kept inside one output segment.
MAX_JOIN_GAP = 3.0
SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")
#: Segments are cut from the words: at sentence ends, at pauses, at a comma once long enough.
SEGMENT_PAUSE = 1.0
LONG_SEGMENT = 10.0
MAX_SEGMENT = 20.0


def locate(window: Window, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map times inside a window to (piece index, time on that piece's recording).

    A time in the silence between two pieces goes to the nearer one; times are clamped to the
    piece, so nothing lands outside the speech it came from.
    """
    offsets = np.array([p.offset for p in window.pieces])
    ends = offsets + np.array([p.duration for p in window.pieces])
    idx = np.clip(np.searchsorted(offsets, times, side="right") - 1, 0, len(offsets) - 1)
    nxt = np.minimum(idx + 1, len(offsets) - 1)
    to_next = (nxt != idx) & (times > ends[idx]) & (offsets[nxt] - times < times - ends[idx])
    idx = np.where(to_next, nxt, idx)
    starts = np.array([p.start for p in window.pieces])[idx]
    local = np.clip(times - offsets[idx], 0.0, ends[idx] - offsets[idx])
    return idx, starts + local


class Placement(NamedTuple):
    """Where a window's output fell, per piece: the spans of its words (or of its segments when
    not aligned) on its recording and their text. ``doubtful`` holds the pieces whose words may
    belong to another recording: those on either side of a word that fell wholly in the
    silence between pieces of two recordings."""

    spans: list[list[tuple[float, float]]]
    texts: list[str]
    doubtful: set[int]


def placement(window: Window, text: WindowText) -> Placement:
    """Words (or segments) of ``text`` per piece of ``window``, on the recordings' timelines."""
    items = [(w["start"], w["end"], w["word"]) for seg in text.segments for w in seg["words"]]
    items += [(seg["start"], seg["end"], seg["text"]) for seg in text.segments if not seg["words"]]
    spans: list[list[tuple[float, float]]] = [[] for _ in window.pieces]
    texts = [""] * len(window.pieces)
    doubtful: set[int] = set()
    if not items:
        return Placement(spans, texts, doubtful)
    mids = np.array([(i[0] + i[1]) / 2 for i in items], dtype=float)
    idx, _ = locate(window, mids)
    for (s, e, body), k in zip(items, idx.tolist()):
        piece = window.pieces[k]
        if e < piece.offset or s > piece.offset + piece.duration:
            # wholly in a gap: doubtful if the pieces on either side belong to two recordings
            side = k + 1 if s > piece.offset + piece.duration else k - 1
            if 0 <= side < len(window.pieces) and window.pieces[side].recording != piece.recording:
                doubtful.update((k, side))
        lo = piece.start + min(max(s - piece.offset, 0.0), piece.duration)
        hi = piece.start + min(max(e - piece.offset, 0.0), piece.duration)
        # An aligned word longer than this was stretched over audio nobody wrote (its start holds):
        # it covers only its first MAX_WORD_SPAN, so what it hides is found and decoded again.
        spans[k].append((float(lo), float(min(max(lo, hi), lo + MAX_WORD_SPAN))))
        texts[k] += body
    return Placement(spans, texts, doubtful)


def uncovered(piece: Piece, spans: Sequence[tuple[float, float]], pad: float, min_length: float) -> list[SpeechRegion]:
    """Stretches of ``piece`` (recording timeline) at least ``min_length`` long that no span,
    widened by ``pad`` on each side, touches: speech the decoder wrote nothing for."""
    out, cursor = [], piece.start
    for s, e in sorted(spans):
        if s - pad - cursor >= min_length:
            out.append(SpeechRegion(cursor, s - pad))
        cursor = max(cursor, e + pad)
    if piece.end - cursor >= min_length:
        out.append(SpeechRegion(cursor, piece.end))
    return out


def unpack(window: Window, text: WindowText) -> Iterator[tuple[int, Segment]]:
    """Split a window's segments back onto their recordings, by where each word falls.

    Each word goes to the piece holding its midpoint; a Whisper segment whose words fall in
    pieces of two recordings becomes one segment on each.

    Yields:
        ``(recording index, segment)`` with times on that recording's timeline.
    """
    for seg in text.segments:
        words = seg["words"]
        if not words:  # not aligned: the window holds one recording; map the segment's ends
            idx, times = locate(window, np.array([seg["start"], seg["end"]], dtype=float))
            start, end = (round(float(t), 3) for t in times)
            yield window.pieces[idx[0]].recording, Segment(
                id=0, start=start, end=max(start, end), text=seg["text"],
                no_speech_prob=round(float(text.no_speech_prob), 4),
                avg_logprob=round(float(text.avg_logprob), 4),
            )
            continue
        starts = np.array([w["start"] for w in words], dtype=float)
        ends = np.array([w["end"] for w in words], dtype=float)
        idx, _ = locate(window, (starts + ends) / 2)
        run: list[Word] = []
        run_rec = -1
        for w, k, s, e in zip(words, idx, starts, ends):
            piece = window.pieces[k]
            lo = float(piece.start + min(max(s - piece.offset, 0.0), piece.duration))
            hi = float(piece.start + min(max(e - piece.offset, 0.0), piece.duration))
            # A segment never spans two recordings, nor a jump on one recording's timeline
            # (pieces packed side by side may come from far apart, e.g. in a retry window).
            if run and (piece.recording != run_rec or not -0.5 <= lo - run[-1].end <= MAX_JOIN_GAP
                        or _ends_segment(run, lo)):
                yield run_rec, _segment(run, text)
                run = []
            run_rec = piece.recording
            run.append(Word(start=round(lo, 3), end=round(max(hi, lo), 3), word=w["word"],
                            probability=round(float(w["probability"]), 4)))
        if run:
            yield run_rec, _segment(run, text)


def _ends_segment(run: list[Word], next_start: float) -> bool:
    """Whether a segment holding ``run`` ends before a word starting at ``next_start``."""
    last = run[-1].word.rstrip()
    length = run[-1].end - run[0].start
    return (last.endswith(SENTENCE_ENDS) or next_start - run[-1].end >= SEGMENT_PAUSE
            or (length >= LONG_SEGMENT and last.endswith((",", ";", ":"))) or length >= MAX_SEGMENT)


def clip_segment(segment: Segment, ranges: Sequence[SpeechRegion]) -> Segment | None:
    """``segment`` with only the words that start in one of ``ranges`` (a word's start holds even
    when alignment stretched its end over silence); a segment without words is kept whole when
    its middle lies in a range. None when nothing is left."""
    def inside(start: float, end: float) -> bool:
        at = (start + end) / 2 if not segment.words else start
        return any(r.start <= at <= r.end for r in ranges)

    if not segment.words:
        return segment if inside(segment.start, segment.end) else None
    words = [w for w in segment.words if inside(w.start, w.end)]
    if len(words) == len(segment.words):
        return segment
    if not words:
        return None
    text = "".join(w.word for w in words)
    return msgspec.structs.replace(segment, start=words[0].start, end=words[-1].end, text=text, words=words)


def _segment(words: list[Word], text: WindowText) -> Segment:
    from faster_whisper.transcribe import get_compression_ratio

    for prev, cur in zip(words, words[1:]):  # keep word times monotonic after the mapping
        if cur.start < prev.end:
            cur.start = min(prev.end, cur.end)
    body = "".join(w.word for w in words)
    logp = [math.log(max(w.probability, 1e-6)) for w in words]
    return Segment(
        id=0,
        start=words[0].start,
        end=words[-1].end,
        text=body,
        words=words,
        avg_logprob=round(sum(logp) / len(logp), 4),
        no_speech_prob=round(float(text.no_speech_prob), 4),
        compression_ratio=round(get_compression_ratio(body), 3) if body.strip() else 0.0,
    )
