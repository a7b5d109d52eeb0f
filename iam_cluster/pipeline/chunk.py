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
#: there, and a word aligned into it is easy to place (see ``assign``). Measured (recall
#: benchmark, issue 11): at 1.0 s packing changed files' words (union folder 9.20 % WER against
#: 8.05 % alone) and moved one word between files; at 1.5 s a word moved; at 2.0 s the folder run
#: matches the alone run. Windows with room to spare widen it further (``spread``).
RECORDING_GAP = 2.0


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
            windows.append(Window(pieces=spread(current, chunk_length)))
        current, end = [], 0.0

    for rec, rec_regions in enumerate(regions):
        if not rec_regions:
            continue
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


#: A word aligned wholly into the silence between two recordings' pieces is still placed (by
#: nearness) when it lies at least this much nearer one piece than the other.
GAP_SLACK = 0.5
#: A window with room to spare widens the silence between its recordings up to this (the wider
#: the gap, the less alignment can carry a word across it), keeping its end this far from the
#: window's (Whisper, writing timestamps, tends to stop before speech near the end of its 30 s).
MAX_SPREAD_GAP = 4.0
SPREAD_TAIL = 4.0


def spread(pieces: Sequence[Piece], chunk_length: float) -> tuple[Piece, ...]:
    """``pieces`` with the gaps between recordings widened into the window's spare time."""
    changes = [k for k in range(1, len(pieces)) if pieces[k].recording != pieces[k - 1].recording]
    used = pieces[-1].offset + pieces[-1].duration
    spare = chunk_length - SPREAD_TAIL - used
    if not changes or spare <= 0:
        return tuple(pieces)
    out, shift = [], 0.0
    for k, p in enumerate(pieces):
        if k in changes:
            gap = p.offset - (pieces[k - 1].offset + pieces[k - 1].duration)
            shift += max(0.0, min(MAX_SPREAD_GAP - gap, spare / len(changes)))
        out.append(msgspec.structs.replace(p, offset=p.offset + shift))
    return tuple(out)


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


def assign(window: Window, text: WindowText) -> tuple[list[list[int]], set[int]]:
    """The piece of ``window`` each word of ``text`` belongs to, per segment (a segment without
    words: one entry, for the whole segment), and the pieces in doubt.

    A word goes to the piece nearest its midpoint. A word whose midpoint lies in the silence
    between pieces of two recordings (alignment often stretches a sentence's last word past its
    audio) goes to the piece holding the other words of its Whisper segment when they all lie in
    one of the two. Otherwise one aligned wholly into the silence goes to the nearer piece when it
    is at least ``GAP_SLACK`` nearer, else both pieces are doubtful: the word may be another
    recording's. So are the pieces a word stretches over when they belong to two recordings, and
    two pieces of different recordings that one segment's words pass between mid-sentence through
    a word in the silence.
    """
    pieces = window.pieces
    spans = [[(w["start"], w["end"]) for w in seg["words"]] or [(seg["start"], seg["end"])]
             for seg in text.segments]
    flat = np.array([(s + e) / 2 for seg in spans for s, e in seg], dtype=float)
    nearest = locate(window, flat)[0].tolist() if len(flat) else []
    out: list[list[int]] = []
    doubtful: set[int] = set()
    at = 0
    for seg, words in zip(spans, (segment["words"] for segment in text.segments)):
        ks = nearest[at : at + len(seg)]
        at += len(seg)
        # a word whose midpoint lies in the silence beside its piece: wholly there, or stretched
        # over it ("In this regard...": "regard..." from the end of one clip to 0.7 s into the
        # next clip's speech, whose first word it became by nearness)
        outside = [not pieces[k].offset <= (s + e) / 2 <= pieces[k].offset + pieces[k].duration
                   for (s, e), k in zip(seg, ks)]
        inside = {k for k, away in zip(ks, outside) if not away}
        settled = set()
        for n, ((s, e), k, away) in enumerate(zip(seg, ks, outside)):
            if not away:
                continue
            side = k + 1 if (s + e) / 2 > pieces[k].offset + pieces[k].duration else k - 1
            if not 0 <= side < len(pieces) or pieces[side].recording == pieces[k].recording:
                continue
            if len(inside) == 1 and inside <= {k, side}:
                ks[n] = next(iter(inside))
                settled.add(n)
                continue
            if not (e < pieces[k].offset or s > pieces[k].offset + pieces[k].duration):
                continue  # it overlaps a piece (below)
            other = pieces[side]
            near = s - (pieces[k].offset + pieces[k].duration) if side > k else pieces[k].offset - e
            far = other.offset - e if side > k else s - (other.offset + other.duration)
            if far - near < GAP_SLACK:
                doubtful.update((k, side))
        for n, (s, e) in enumerate(seg):
            # A word stretched from one recording's speech over the silence into another's (a
            # 5.4-s "unless" over a murmur's two pieces into the clip that said it) may be either's.
            touched = [j for j, p in enumerate(pieces) if s < p.offset + p.duration and e > p.offset]
            if n not in settled and len({pieces[j].recording for j in touched}) > 1:
                doubtful.update(touched)
        for n in range(1, len(words)):
            # One segment passing from one recording to the next mid-sentence, with a word of
            # either side aligned into the silence between them, was not heard as two
            # recordings' ("ten | of clubs." wholly in that silence, split by nearness; "runs down
            # the | middle," with "middle," 1.5 s before its piece): either may hold the other's
            # words. Consecutive sentences of one text (an audiobook cut into files) do cross
            # mid-sentence, with their words in their pieces.
            a, b = pieces[ks[n - 1]], pieces[ks[n]]
            if a.recording != b.recording and not words[n - 1]["word"].rstrip().endswith(SENTENCE_ENDS) and (
                    words[n - 1]["start"] > a.offset + a.duration + GAP_SLACK or words[n]["end"] < b.offset - GAP_SLACK):
                doubtful.update((ks[n - 1], ks[n]))
        out.append(ks)
    return out, doubtful


def placement(window: Window, text: WindowText) -> Placement:
    """Words (or segments) of ``text`` per piece of ``window`` (see ``assign``), on the
    recordings' timelines."""
    owners, doubtful = assign(window, text)
    spans: list[list[tuple[float, float]]] = [[] for _ in window.pieces]
    texts = [""] * len(window.pieces)
    for seg, ks in zip(text.segments, owners):
        items = [(w["start"], w["end"], w["word"]) for w in seg["words"]] or [(seg["start"], seg["end"], seg["text"])]
        for (s, e, body), k in zip(items, ks):
            piece = window.pieces[k]
            lo = piece.start + min(max(s - piece.offset, 0.0), piece.duration)
            hi = piece.start + min(max(e - piece.offset, 0.0), piece.duration)
            # An aligned word longer than this was stretched over audio nobody wrote (its start
            # holds): it covers only its first MAX_WORD_SPAN, so what it hides is decoded again.
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

    Each word goes to its piece (see ``assign``); a Whisper segment whose words fall in pieces
    of two recordings becomes one segment on each.

    Yields:
        ``(recording index, segment)`` with times on that recording's timeline.
    """
    owners, _ = assign(window, text)
    for seg, ks in zip(text.segments, owners):
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
        run: list[Word] = []
        run_rec = -1
        for w, k, s, e in zip(words, ks, starts, ends):
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


#: Resolution of output times (``unpack`` rounds to the millisecond): a word clamped to the end
#: of its piece (aligned into the silence after it) may round past that end by half of it.
TIME_STEP = 0.001


def clip_segment(segment: Segment, ranges: Sequence[SpeechRegion], drop: Sequence[Word] = ()) -> Segment | None:
    """``segment`` with only the words that start in one of ``ranges`` (a word's start holds even
    when alignment stretched its end over silence; ``TIME_STEP`` of rounding is allowed: a word
    aligned past its piece is clamped to the piece's end, and Whisper most often did hear it
    there) and are not in ``drop`` (the very objects); a segment without words is kept whole
    when its middle lies in a range. None when nothing is left."""
    def inside(start: float, end: float) -> bool:
        at = (start + end) / 2 if not segment.words else start
        return any(r.start - TIME_STEP <= at <= r.end + TIME_STEP for r in ranges)

    if not segment.words:
        return segment if inside(segment.start, segment.end) else None
    dropped = {id(w) for w in drop}
    words = [w for w in segment.words if inside(w.start, w.end) and id(w) not in dropped]
    if len(words) == len(segment.words):
        return segment
    if not words:
        return None
    text = "".join(w.word for w in words)
    return msgspec.structs.replace(segment, start=words[0].start, end=words[-1].end, text=text, words=words)


#: A word a retry re-reads from its context echoes a word already written when their texts are
#: equal and their starts this close (two alignments of one word differ by a few tenths).
ECHO_SECONDS = 0.5
#: How far a word rescued from a retry's context may start before the end of the last word
#: written before the skipped stretch (alignment jitter).
RESCUE_SLACK = 0.1


def _said_as(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


def _echoes(words: Sequence[Word], known: Sequence[Word]) -> list[int]:
    """Indices of ``words`` that repeat a ``known`` word (same text, starts within ``ECHO_SECONDS``)."""
    said = [(_said_as(k.word), k.start) for k in known]
    return [i for i, w in enumerate(words)
            if any(t == _said_as(w.word) and abs(s - w.start) <= ECHO_SECONDS for t, s in said)]


#: A number of at least this many digits that a retry writes again next to where the earlier
#: pass wrote it is an echo (see ``numeral_echoes``).
NUMERAL_DIGITS = 3
#: ... "next to": within this many seconds per digit of the skipped stretch (a digit spoken takes
#: about half a second; "01803" was said over 2.7 s).
NUMERAL_SECONDS_PER_DIGIT = 0.5


def _digits(word: str) -> str:
    return "".join(ch for ch in word if ch.isdigit())


def numeral_echoes(words: Sequence[Word], known: Sequence[Word], keep: SpeechRegion) -> list[Word]:
    """Numbers among a retry's ``words`` kept in ``keep`` that the earlier pass already wrote
    (``known``) beside the stretch: written again, not said again.

    Whisper writes a spoken number as a few digit tokens ("zero one eight zero three" -> "01803"),
    and alignment fits those tokens into part of the time the digits took to say (ten_minutes:
    "01803" aligned to its last 0.9 s of 2.7; "90210. 01803." both into the piece after the one
    where "nine oh two one oh" was said). The time left without a word is then "skipped speech",
    its retry hears the number again and writes it again: "01803 01803". The echo rule for other
    words (``_echoes``: the same text within ``ECHO_SECONDS``) does not reach so far, and must not:
    "okay, okay" is said twice. A long number is rarely said twice in a row, so one of at least
    ``NUMERAL_DIGITS`` digits, already written within its own spoken length
    (``NUMERAL_SECONDS_PER_DIGIT`` per digit) of the stretch, is not written again.
    """
    out = []
    for w in words:
        digits = _digits(w.word)
        if len(digits) < NUMERAL_DIGITS or not keep.start - TIME_STEP <= w.start <= keep.end + TIME_STEP:
            continue
        reach = len(digits) * NUMERAL_SECONDS_PER_DIGIT
        if any(_digits(k.word) == digits and keep.start - reach <= k.start <= keep.end + reach for k in known):
            out.append(w)
    return out


def rescued_range(keep: SpeechRegion, piece: SpeechRegion, words: Sequence[Word], known: Sequence[Word]) -> SpeechRegion:
    """The stretch of a retry piece whose words are kept: ``keep`` (the skipped speech), widened
    over the words of its context that the earlier pass had not written.

    A retry is decoded with a second of the audio around the skipped stretch (its ``piece``), so
    Whisper re-reads the words written before and after it; only words starting inside ``keep``
    were kept. But alignment moves a word by a few tenths from one decode to the next, and a word
    that follows the re-read ones at the edge of ``keep`` fell outside it and was lost ("as the
    invention [of] the art of printing", LJ001-0005 in a folder). Words of ``words`` (the retry's,
    on the recording's timeline) before ``keep`` that come after the last one echoing a ``known``
    word (already written) and start no earlier than the end of the last known word before the
    stretch are kept too; the same, mirrored, after it. Without an echo nothing is added: the
    context's words cannot be told from the written ones.
    """
    lo, hi = keep.start, keep.end
    before = [w for w in words if piece.start - TIME_STEP <= w.start < keep.start]
    known_before = [k for k in known if piece.start - ECHO_SECONDS <= k.start < keep.start]
    if before and known_before:
        echoes = _echoes(before, known_before)
        if echoes:
            last_end = max(k.end for k in known_before)
            new = [w for w in before[echoes[-1] + 1 :] if w.start >= last_end - RESCUE_SLACK]
            if new:
                lo = min(lo, new[0].start)
    after = [w for w in words if keep.end < w.start <= piece.end + TIME_STEP]
    known_after = [k for k in known if keep.end < k.start <= piece.end + ECHO_SECONDS]
    if after and known_after:
        echoes = _echoes(after, known_after)
        if echoes:
            first_start = min(k.start for k in known_after)
            new = [w for w in after[: echoes[0]] if w.end <= first_start + RESCUE_SLACK]
            if new:
                hi = max(hi, new[-1].start)
    return SpeechRegion(lo, hi)


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
