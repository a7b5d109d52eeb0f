"""Decode packed windows, check what each wrote, and decode again what was lost or is in doubt.

Pass 1 decodes the packed windows. A window holding several recordings is trusted only if every
recording in it got words, none of them repetitive or impossibly dense, none left in the silence
between two recordings, and no stretch of its speech was skipped; otherwise its recordings are
decoded again, each on its own, so one recording's words can never land in another's. Speech a
window skipped (Whisper stops early near the end of its 30 s, or jumps over a sentence in long
continuous speech) is cut out and decoded again, beside its own file's skipped speech only (the
shards of a long file share such windows; another file's louder voice beside a quiet stretch made
Whisper pass over it again). Recordings in doubt are packed again, and after
``MAX_SHARED_TRIES`` untrusted windows get windows of their own; a retry is never retried.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from iam_cluster.pipeline.asr import too_dense
from iam_cluster.pipeline.chunk import (clip_segment, numeral_echoes, pack, placement, rescued_range, uncovered,
                                        unpack)
from iam_cluster.pipeline.level import gain
from iam_cluster.pipeline.stats import Stats
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, ProgressHook, Segment, SpeechRegion, Window
from iam_cluster.pipeline.types import TranscribeOptions, no_progress

#: Whisper often stops before speech that ends in the last second of its 30-s input, expecting
#: the next window to carry on; windows are packed this much short of the chunk length.
TAIL_MARGIN = 1.0
#: A stretch of a piece this long with no word within WORD_PAD of it is speech Whisper skipped.
MIN_MISS = 1.0
WORD_PAD = 0.3
#: At the end of a window (where Whisper, writing timestamps, drops the last words it hears)
#: a shorter stretch counts. Not much shorter: a window's last piece ends in the VAD's padding
#: (``speech_pad_ms``, 0.6 s of what Silero heard as silence), and the engine has already
#: decoded on past the last word there (``asr.TAIL_GAP``). At 0.5 s, both retries of
#: long_silences were that padding (speech ended 0.3 and 0.1 s into them; nothing written, 10 %
#: of the file's time). Chosen on the nine long-form and perturbed files with text, 0.5 / 0.8 /
#: 1.0 s: 563 / 556 / 560 word errors of 4,447; every leave-one-file-out fold chooses 0.8, and
#: the dev and quiet-clip folder (22 files) is unchanged (29 errors of 557 at 0.5 and 0.8).
#: 1.0 (no shorter rule at the end) lost "the middle." in harvard_gaps and "been surpassed." in
#: phone_read.
MIN_TAIL_MISS = 0.8
#: Skipped speech is decoded again with this much of the audio around it (clipped to its piece),
#: so Whisper hears it in context; only words inside the skipped stretch are kept. Chosen by
#: leave-one-file-out WER over the long-form set's five files with text references (0.5, 1.0,
#: 1.5, 2.0 s: every fold chose 1.0; held-out WER 7.56 % against 8.59 % at 2.0 s, same windows;
#: ``benchmarks/results/retry-context-cv-cpu.md``).
RETRY_CONTEXT = 1.0
#: Skipped speech after the end of what its retry window wrote is decoded again if at least this
#: long in all (a sentence of a read passage was lost); less costs a window for a word or two.
MIN_LOST_AT_END = 2.0
#: ... this many times: on meeting audio (AMI mixes) most such stretches hold nothing Whisper
#: writes, and three chances took `ami_mix_b` from 16 to 21 windows where one takes it to 19.
MAX_CHANCES = 1
#: Speech a window skipped is decoded again in windows of at most this many seconds: the
#: encoder's input floor for such windows less their tail (``asr.FIT_MIN_SECONDS``), so a shorter
#: window costs no less to encode. Packed up to 29 s, a collage of eleven quiet stretches of a
#: noisy recording got one sentence written (ten_minutes with pink noise 10 dB under its speech:
#: 64 words deleted, against 28 at 13 s). On the text files of the long-form set, with noise and
#: reverberation added (15 files), WER 12.82 % at 29 s, 12.88 % at 20 s,
#: 12.40 % at 13 s, 12.46 % at 8 s; the dev and AMI recall sets do not change.
RETRY_WINDOW = 13.0
#: Speech in windows that were not trusted this often is then decoded in windows of its own.
MAX_SHARED_TRIES = 2
#: Windows in flight at once, in batches (``WindowDecoder._decode``): the current batch and the
#: next, whose encodes the model's copies take up as they come free of the current one's parts
#: (``copies.CopyPool``); each waiting window holds its audio (30 s: 1.9 MB) and encoder output.
AHEAD = 2


def window_limit(options: TranscribeOptions) -> float:
    """Seconds of speech a window may hold: the chunk length less a tail Whisper tends to skip."""
    return max(1.0, options.chunk_length - TAIL_MARGIN)


def long_files(regions: Sequence[Sequence[SpeechRegion]], files: Sequence[int],
               options: TranscribeOptions) -> set[int]:
    """The files (all their shards' regions together) whose speech, packed, needs more than one
    window: a file that fits in one is never split across two (``chunk.pack``), a longer one is."""
    need: dict[int, float] = {}
    for f, regs in zip(files, regions):
        need[f] = need.get(f, 0.0) + sum(r.duration for r in regs) + options.pack_gap * max(0, len(regs) - 1)
    return {f for f, seconds in need.items() if seconds > window_limit(options)}


def window_audio(window: Window, recordings: Sequence[Audio], gains: Sequence[float] | None = None) -> np.ndarray:
    """The samples of a window: its pieces laid at their offsets (each recording at its own
    gain, see ``level``), silence between them."""
    out = np.zeros(int(math.ceil(window.duration * SAMPLE_RATE)), dtype=np.float32)
    for p in window.pieces:
        src = recordings[p.recording].span(p.start, p.end)
        at = int(p.offset * SAMPLE_RATE)
        n = len(src[: len(out) - at])
        out[at : at + n] = src[:n] * (gains[p.recording] if gains else 1.0)
    return out


@dataclass(frozen=True)
class _Item:
    """Speech of one recording still to decode: how often it was in a window that was not
    trusted, and whether it is speech a window skipped (a retry, never retried again)."""

    region: SpeechRegion
    tries: int = 0
    retry: bool = False
    #: Words are kept only inside this stretch (a retry's context is heard, not written).
    keep: SpeechRegion | None = None
    #: times a retry was decoded again because its window's text ended before it
    chances: int = 0


@dataclass
class _Held:
    """What a shared window wrote for the recording just before one it dropped at its end (see
    ``_dropped_tail``), kept aside until the dropped recording is decoded again: if the dropped
    recording's words then turn out to be what its neighbour got, the neighbour's words are
    thrown away and decoded again; otherwise they are kept."""

    neighbour: int
    segments: list[Segment]
    words: list[str]
    #: the neighbour's items in that window (decoded again if rejected)
    items: list[_Item]
    #: speech of the neighbour that window skipped (decoded again if accepted)
    retries: list[_Item]


class WindowDecoder:
    """Runs the passes for one group of recordings and collects their segments.

    Args:
        asr: a ``SpeechRecognizer`` (``decode(audios, language, options, align)``).
        recordings: the decoded recordings.
        languages: per recording, (language, probability).
        options: the transcription options.
        batch_size: windows per ``asr.decode`` call.
        stats: where time and counts go.
        hook: progress, as ``hook("asr", windows done, windows known so far)``.
    """

    def __init__(self, asr, recordings: Sequence[Audio], languages: Sequence[tuple[str, float]],
                 options: TranscribeOptions, batch_size: int, stats: Stats | None = None,
                 hook: ProgressHook = no_progress, files: Sequence[int] | None = None) -> None:
        self.asr, self.recordings, self.options, self.hook = asr, recordings, options, hook
        self.batch_size = batch_size
        self.languages = [lang for lang, _ in languages]
        #: per recording, the file it is a shard of (shards of one file may share retry windows)
        self.files = list(files) if files is not None else list(range(len(recordings)))
        self.stats = stats or Stats()
        self.gains = [gain(a.samples) for a in recordings]
        self.segments: list[list[Segment]] = [[] for _ in recordings]
        self.done = self.total = 0
        #: per dropped recording, its neighbours' words held until it is decoded again
        self.held: dict[int, list[_Held]] = {}
        #: per recording, the words of its trusted (not retry) decodes so far
        self.heard: list[list[str]] = [[] for _ in recordings]
        #: files whose speech fills more than one window: they get windows of their own
        self.long_files: set[int] = set()

    def run(self, regions: Sequence[Sequence[SpeechRegion]]) -> list[list[Segment]]:
        """Decode every recording's speech regions; returns each recording's segments."""
        self.long_files = long_files(regions, self.files, self.options)
        todo = [[_Item(r) for r in regs] for regs in regions]
        first = True
        while any(todo) or self.held:
            todo = self._pass(todo, first)
            first = False
        return self.segments

    def _groups(self, todo: list[list[_Item]]) -> list[tuple[str, int | None]]:
        """Per recording, the key of the windows it may share: its language and, for a file that
        shares windows with no other, the file."""
        # A file with skipped speech to decode again shares windows with no other file: packed
        # beside another file's (a louder voice), a quiet stretch was passed over again, and lost.
        # Its shards still share windows with each other.
        retrying = {self.files[rec] for rec, items in enumerate(todo) if any(it.retry for it in items)}
        # A file whose speech fills more than one window shares windows with no other file either:
        # packed after another file's speech, all its windows were cut at other places than when
        # it was decoded alone, and its words changed (nine long-form read recordings as one
        # folder: every one differed from its alone run, 447 words of 4,286; now 8 words in 4).
        # Files that fit in one window still share windows: that is what makes a folder fast.
        own = retrying | self.long_files
        return [(lang, f if f in own else None) for lang, f in zip(self.languages, self.files)]

    def _windows(self, todo: list[list[_Item]], limit: float) -> list[tuple[Window, list[_Item]]]:
        """Pack the pending speech into windows of at most ``limit`` seconds (skipped speech: at
        most ``RETRY_WINDOW``), each with the items of its pieces. Speech that was in too many
        untrusted windows gets windows of its own recording."""
        o = self.options
        out = []
        groups = self._groups(todo)
        # Skipped speech gets windows of its own, of at most RETRY_WINDOW seconds, whatever else the
        # pass decodes: capped only in passes of nothing but skipped speech, a folder's retries of
        # trn04's quiet opening went into a 18-s collage beside other recordings decoded again
        # whole, and Whisper wrote none of it (alone, 13-s windows: "So, unfortunately, I'm just
        # going to be").
        for alone, retry in ((False, False), (False, True), (True, False), (True, True)):
            chosen = [sorted((it for it in items if (it.tries >= MAX_SHARED_TRIES) == alone and it.retry == retry),
                             key=lambda it: it.region.start) for items in todo]
            lookup = {(rec, it.region.start, it.region.end): it for rec, items in enumerate(chosen) for it in items}
            regions = [[it.region for it in items] for items in chosen]
            across = o.pack_recordings and not alone
            cap = min(limit, RETRY_WINDOW) if retry else limit
            for w in pack(regions, cap, o.pack_gap, across_recordings=across, groups=groups):
                out.append((w, [lookup.get((p.recording, p.start, p.end), _Item(SpeechRegion(p.start, p.end)))
                                for p in w.pieces]))
        return out

    def _spread_over_workers(self, todo: list[list[_Item]], jobs: list) -> list:
        """A later pass with fewer windows than the model has CPU workers is packed into as many
        shorter windows as there are workers: a worker left idle costs as much time as one
        decoding, and Whisper writes a short collage of skipped stretches more completely than a
        long one (it sometimes ends its text after the first few). Each file with windows of its
        own is judged by its own windows, whatever else the pass decodes: judged by the whole
        pass, a meeting's skipped stretches were cut into other windows in a folder than alone,
        and its words changed with the files beside it (ami_mix_a: 370 words alone, 363 and 365
        in two folders)."""
        workers = getattr(self.asr, "replicas", 1)
        if not jobs or workers <= 1:
            return jobs
        keys = self._groups(todo)
        by_group: dict[tuple[str, int | None], list] = {}
        for job in jobs:
            by_group.setdefault(keys[job[0].pieces[0].recording], []).append(job)
        out = []
        for key, mine in by_group.items():
            if len(mine) < workers:
                recordings = {rec for rec, k in enumerate(keys) if k == key}
                mine = self._spread([items if rec in recordings else [] for rec, items in enumerate(todo)], mine,
                                    workers)
            out.extend(mine)
        return out

    def _spread(self, todo: list[list[_Item]], jobs: list, workers: int) -> list:
        """``jobs`` (all the windows of ``todo``) packed again into at most ``workers`` shorter
        windows, when that gives more of them."""
        pieces = [p for w, _ in jobs for p in w.pieces]
        limit = max(max(p.duration for p in pieces), sum(p.duration for p in pieces) / workers)
        while limit < window_limit(self.options):  # the shortest limit that needs no more windows
            more = self._windows(todo, limit)
            if len(more) <= workers:
                return more if len(more) > len(jobs) else jobs
            limit += 0.5
        return jobs

    def _pass(self, todo: list[list[_Item]], first: bool) -> list[list[_Item]]:
        """Decode the pending speech once; keep what is sound, return what must be decoded again."""
        limit = window_limit(self.options)
        if not first and all(it.retry for items in todo for it in items):
            limit = min(limit, RETRY_WINDOW)
        jobs = self._windows(todo, limit)
        if not first:
            jobs = self._spread_over_workers(todo, jobs)
            self.stats.count("again_windows", len(jobs))
        nxt: list[list[_Item]] = [[] for _ in self.recordings]
        self.total += len(jobs)
        retries = [any(it.keep for it in items) for _, items in jobs]
        for (window, items), text in zip(jobs, self._decode([w for w, _ in jobs], retries, first)):
            with self.stats.time("unpack"):
                placed = placement(window, text)
                # Shards of one recording are checked against each other like recordings: a shard
                # whose piece came out repetitive (a decoding loop) gets decoded again in another
                # layout; with the shards taken as one recording it was kept (and the Serve and
                # in-process paths, whose batches differ, disagreed on a long recording).
                shared = len(window.recordings) > 1
                dropped = _dropped_tail(window.pieces, placed) if shared else None
                suspects = self._suspects(window, placed, items, dropped) if shared else set()
                held = None
                if dropped is not None:
                    before = window.pieces[[p.recording for p in window.pieces].index(dropped) - 1].recording
                    if before not in suspects:
                        held = _Held(before, [], [], [], [])
                        self.held.setdefault(dropped, []).append(held)
                        self.stats.count("held_recordings")
                unpacked = list(unpack(window, text))
                keep: dict[int, list[SpeechRegion]] = {}
                echoes: dict[int, list] = {}
                for piece, item in zip(window.pieces, items):
                    region = SpeechRegion(piece.start, piece.end)
                    if item.keep:  # a retry: the skipped stretch, and the words its context adds
                        heard = [w for seg in unpacked if seg[0] == piece.recording for w in seg[1].words]
                        known = [w for seg in self.segments[piece.recording] for w in seg.words]
                        region = rescued_range(item.keep, region, heard, known)
                        if region != item.keep:
                            self.stats.count("rescued_context_pieces")
                        echoed = numeral_echoes(heard, known, region)
                        self.stats.count("numeral_echoes", len(echoed))
                        echoes.setdefault(piece.recording, []).extend(echoed)
                    keep.setdefault(piece.recording, []).append(region)
                for rec, segment in unpacked:
                    if rec not in suspects and (segment := clip_segment(segment, keep[rec], echoes.get(rec, ()))):
                        (held.segments if held and rec == held.neighbour else self.segments[rec]).append(segment)
                cut_short = _after_the_text(window, items, placed)
                for k, (piece, item, spans, said) in enumerate(zip(window.pieces, items, placed.spans, placed.texts)):
                    rec = piece.recording
                    if rec in suspects or rec == dropped:
                        nxt[rec].append(replace(item, tries=item.tries + 1))
                        continue
                    if held and rec == held.neighbour:
                        held.items.append(item)
                        held.words.extend(said.lower().split())
                    elif not item.retry:
                        self.heard[rec].extend(said.lower().split())
                    if item.retry:
                        if k in cut_short:
                            self.stats.count("retry_again_pieces")
                            nxt[rec].append(cut_short[k])
                        continue
                    skipped = uncovered(piece, spans, WORD_PAD, MIN_MISS)
                    if piece is window.pieces[-1]:
                        tail = uncovered(piece, spans, WORD_PAD, MIN_TAIL_MISS)[-1:]
                        if tail and tail[0].end == piece.end and tail[0] not in skipped:
                            skipped.append(tail[0])
                    self.stats.count("retry_pieces", len(skipped))
                    # Keep words that start in the stretch or just before it (the stretch
                    # begins WORD_PAD after the last word written).
                    (held.retries if held and rec == held.neighbour else nxt[rec]).extend(
                        _Item(SpeechRegion(max(piece.start, r.start - RETRY_CONTEXT),
                                           min(piece.end, r.end + RETRY_CONTEXT)), 0, True,
                              SpeechRegion(r.start - WORD_PAD / 2, r.end)) for r in skipped)
        self._settle(nxt)
        return nxt

    def _settle(self, nxt: list[list[_Item]]) -> None:
        """Judge the words held for each dropped recording that is now decoded (nothing of it
        left to decode but skipped speech): its neighbour's words are kept unless most of the
        dropped recording's word pairs are among them (the neighbour got its words)."""
        for dropped in list(self.held):
            if any(not it.retry for it in nxt[dropped]):
                continue
            for held in self.held.pop(dropped):
                if _echoes(self.heard[dropped], held.words):
                    self.stats.count("moved_words_caught")
                    nxt[held.neighbour].extend(replace(it, tries=it.tries + 1) for it in held.items)
                else:
                    self.segments[held.neighbour].extend(held.segments)
                    self.heard[held.neighbour].extend(held.words)
                    nxt[held.neighbour].extend(held.retries)

    def _decode(self, windows: list[Window], retries: list[bool], first: bool):
        """Each window's WindowText, in order, decoding batches of one language. Words are always
        aligned: they say whose speech is whose, and what a window skipped."""
        o = self.options
        step = self.batch_size
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault((self.languages[w.pieces[0].recording], retries[i]), []).append(i)
        calls = [(language, retry, indices[start : start + step])
                 for (language, retry), indices in groups.items() for start in range(0, len(indices), step)]

        def call(language: str, retry: bool, batch: list[int]):
            audios = [window_audio(windows[i], self.recordings, self.gains) for i in batch]
            # Windows of skipped speech are decoded without timestamp tokens (with them Whisper
            # leaves out the last words of its input again), and encoded as their few seconds of
            # audio, not 30 s (``asr.FIT_MIN_SECONDS``). A window of one file whose text stops
            # early is decoded on (``asr.WhisperASR._continue_tails``). Only one file's windows may
            # share a CPU ``generate`` (``copies.cpu_parts``).
            files = [{self.files[p.recording] for p in windows[i].pieces} for i in batch]
            sources = [next(iter(f)) if len(f) == 1 else None for f in files]
            return self.asr.submit(audios, language, o, True, timestamps=not retry, fit_input=retry,
                                   tails=[s is not None for s in sources], sources=sources)

        # Calls are submitted ahead (up to ``AHEAD`` batches of windows in flight), so the model's
        # copies go on to the next batch's windows as they come free of the last one's parts.
        texts: dict[int, object] = {}
        self.hook("asr", self.done, self.total)
        flight: collections.deque = collections.deque()
        held = 0

        def collect() -> None:
            nonlocal held
            batch, future = flight.popleft()
            texts.update(zip(batch, future.result()))
            held -= len(batch)
            self.stats.count("windows", len(batch))
            self.done += len(batch)
            self.hook("asr", self.done, self.total)

        with self.stats.time("asr" if first else "asr_again"):
            for language, retry, batch in calls:
                while flight and held + len(batch) > AHEAD * step:
                    collect()
                flight.append((batch, call(language, retry, batch)))
                held += len(batch)
            while flight:
                collect()
        return [texts[i] for i in range(len(windows))]

    def _suspects(self, window: Window, placed, items: Sequence[_Item], dropped: int | None) -> set[int]:
        """Recordings of a shared window whose words may not be (all) their own.

        A piece is bad when its recording got no words, repetitive or impossibly many words,
        when it skipped speech, or when ``placement`` doubts it; its recording is then a
        suspect, and so are the recordings of the pieces on either side, whose words the
        missing ones may have become. A retry (speech a window skipped) that gets no words is
        not bad: most such stretches hold no speech Whisper would write (a breath, a noise), and
        doubting its neighbours decoded them again and again for nothing. Nor is the
        recording Whisper ``dropped`` at the window's end (see ``_dropped_tail``): it is packed
        again, its neighbours kept.
        """
        from faster_whisper.transcribe import get_compression_ratio

        pieces = window.pieces
        speech: dict[int, float] = {}
        body: dict[int, str] = {}
        for piece, text in zip(pieces, placed.texts):
            speech[piece.recording] = speech.get(piece.recording, 0.0) + piece.duration
            body[piece.recording] = body.get(piece.recording, "") + text
        bad_recordings = set()
        retried = {p.recording for p, it in zip(pieces, items) if it.retry}
        only_retries = retried - {p.recording for p, it in zip(pieces, items) if not it.retry}
        for rec, text in body.items():
            n = len(text.split())
            if (n == 0 and rec not in only_retries and rec != dropped) or too_dense(n, speech[rec]) or (
                len(text) > 24 and get_compression_ratio(text) > self.options.compression_ratio_threshold
            ):
                bad_recordings.add(rec)
        bad = set(placed.doubtful)
        # Speech skipped in a window of shards of ONE file (the window across a shard boundary of
        # a long recording) is only decoded again, as in a window of one shard: words it could
        # have moved stay in their file. ami_mix_b: a 1.3-s piece with no words got its shard's
        # 17 s in that window decoded again whole, at a full encode, for a stretch of noise.
        one_file = len({self.files[p.recording] for p in pieces}) == 1
        for k, (piece, spans, item) in enumerate(zip(pieces, placed.spans, items)):
            if piece.recording in bad_recordings or (
                not item.retry and piece.recording != dropped and not one_file
                and uncovered(piece, spans, WORD_PAD, MIN_MISS)
            ):
                bad.add(k)
        suspects = {pieces[k].recording for k in bad}
        self.stats.count("doubtful_pieces", len(placed.doubtful))
        suspects |= {pieces[j].recording for k in bad for j in (k - 1, k + 1) if 0 <= j < len(pieces)}
        if suspects:
            self.stats.count("suspect_recordings", len(suspects))
        return suspects


def _after_the_text(window: Window, items: Sequence[_Item], placed) -> dict[int, _Item]:
    """What of a window of skipped speech comes after the last word it wrote, to decode again
    (by piece index): written without timestamp tokens, Whisper sometimes ends its text early in
    such a collage, and what came after was lost (a whole sentence of a read passage). That is
    the pieces after the last one with words, and the end of that one past its last word (at
    least ``MIN_MISS``); if they hold ``MIN_LOST_AT_END`` in all they are decoded again (at most
    ``MAX_CHANCES`` times). Stretches it passed over between words it wrote are taken as holding
    nothing it would write (a breath, a noise); a window that wrote nothing is taken as silent."""
    written = [k for k, spans in enumerate(placed.spans) if spans]
    if not written:
        return {}
    out = {k: replace(items[k], chances=items[k].chances + 1) for k in range(written[-1] + 1, len(window.pieces))
           if items[k].retry and items[k].chances < MAX_CHANCES}
    last, item = written[-1], items[written[-1]]
    if item.retry and item.chances < MAX_CHANCES and item.keep is not None:
        # (words in the context before its stretch were written by the first pass: never kept twice)
        said_to = max(max(e for _, e in placed.spans[last]) + WORD_PAD, item.keep.start + WORD_PAD / 2)
        if item.keep.end - said_to >= MIN_MISS:
            piece = window.pieces[last]
            out[last] = _Item(SpeechRegion(max(piece.start, said_to - RETRY_CONTEXT), piece.end), 0, True,
                              SpeechRegion(said_to - WORD_PAD / 2, item.keep.end), item.chances + 1)
    lost = sum(it.keep.duration for it in out.values())
    return out if lost >= MIN_LOST_AT_END else {}


def _dropped_tail(pieces: Sequence, placed) -> int | None:
    """The recording Whisper left out at the end of a shared window, if it did: the window's
    last recording, all of whose pieces come after every other recording's, got no words.
    Whisper, writing timestamps, often stops before speech near the end of its 30 s; that is no
    sign of words moved between recordings (the gap between recordings is wide enough that
    alignment does not carry words across it), so its speech is packed again (into a later,
    shorter window) and what its neighbour got is held until then (see ``_Held``)."""
    last = pieces[-1].recording
    mine = [k for k, p in enumerate(pieces) if p.recording == last]
    if mine[0] == 0 or mine != list(range(mine[0], len(pieces))) or any(placed.texts[k].strip() for k in mine):
        return None
    return last


def _echoes(words: Sequence[str], other: Sequence[str]) -> bool:
    """Whether most of ``words`` (its word pairs; a lone word itself) are found in ``other``."""
    def grams(ws: Sequence[str]) -> list[tuple[str, ...]]:
        ws = ["".join(c for c in w if c.isalnum()) for w in ws]
        return [tuple(ws[i : i + 2]) for i in range(len(ws) - 1)] if len(ws) > 1 else [tuple(ws)]

    mine = grams(words) if words else []
    theirs = set(grams(other)) if other else set()
    return bool(mine) and sum(g in theirs for g in mine) >= 0.5 * len(mine)
