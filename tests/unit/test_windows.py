"""The window decoder's passes with a model that fails on purpose: words never change files."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.pipeline.asr import Recognizer, WindowText
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, TranscribeOptions
from iam_cluster.pipeline import windows as passes
from iam_cluster.pipeline.windows import RETRY_WINDOW, WindowDecoder


def tone(rec: int, seconds: float) -> Audio:
    """Recording ``rec`` is a tone whose pitch names it, so the fake model can tell whose audio it
    hears wherever a window puts it (levels are normalised, pitch is not)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return Audio(f"rec{rec}", (0.1 * np.sin(2 * np.pi * 200 * (rec + 1) * t)).astype(np.float32))


def runs(audio: np.ndarray) -> list[tuple[float, float, int]]:
    """(start s, end s, recording) of each stretch of tone in a window."""
    on = np.abs(audio) > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        crossings = np.count_nonzero(np.diff(np.signbit(audio[a:b])))
        freq = crossings / 2 / ((b - a) / SAMPLE_RATE)
        out.append((a / SAMPLE_RATE, b / SAMPLE_RATE, int(round(freq / 200)) - 1))
    return out


def words(start: float, end: float, rec: int) -> list[dict]:
    n = max(1, int((end - start) / 0.5))
    step = (end - start) / n
    return [dict(word=f" r{rec}", start=start + i * step, end=start + (i + 1) * step, probability=0.9)
            for i in range(n)]


def window_text(ws: list[dict]) -> WindowText:
    """What a fake model returns for a window: its words as one segment (none: no segment)."""
    segs = [dict(start=ws[0]["start"], end=ws[-1]["end"], text="".join(w["word"] for w in ws), words=ws)] if ws else []
    return WindowText(segments=segs, avg_logprob=-0.2, no_speech_prob=0.01, temperature=0.0)


class SeesWindows(Recognizer):
    """A fake model that notes each window's stretches of tone (``windows``) and writes
    ``said(stretches)`` for it."""

    def __init__(self) -> None:
        self.windows: list[list[int]] = []

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        out = []
        for audio in audios:
            found = runs(audio)
            self.windows.append([r for _, _, r in found])
            out.append(window_text(self.said(found)))
        return out

    def said(self, found: list[tuple[float, float, int]]) -> list[dict]:
        raise NotImplementedError


class DropsTheLast(SeesWindows):
    """Writes ``r<k>`` twice a second of recording k's tone, but leaves out the last recording of
    a window holding several (as Whisper, writing timestamps, often stops before the end)."""

    def said(self, found):
        if len({r for _, _, r in found}) > 1:
            found = [f for f in found if f[2] != found[-1][2]]
        return [w for s, e, r in found for w in words(s, e, r)]


class FakeASR(Recognizer):
    """Writes ``r<k>`` twice a second of recording k's tone, except that (a) in a window holding
    several recordings it gives the last recording's words to the one before it, leaving the
    last empty, and (b) in the first window it sees of a long piece it skips 4 s in the middle."""

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        out = []
        for audio in audios:
            found = runs(audio)
            ws = []
            if len({r for _, _, r in found}) > 1:
                *head, (s_last, e_last, r_last) = found
                for s, e, r in head[:-1]:
                    ws += words(s, e, r)
                s, e, _ = head[-1]
                ws += words(s, e, head[-1][2])[:1] + words(s + 0.5, e, r_last)  # the neighbour's words
            else:
                for s, e, r in found:
                    part = words(s, e, r)
                    if e - s > 10 and self.calls == 0:
                        part = [w for w in part if not 4.0 <= w["start"] < 8.0]
                    ws += part
            self.calls += 1
            out.append(window_text(ws))
        return out


def test_words_moved_between_packed_recordings_are_decoded_again_alone():
    recordings = [tone(k, 2.0 + k % 3) for k in range(6)]
    regions = [[SpeechRegion(0.0, a.duration)] for a in recordings]
    decoder = WindowDecoder(FakeASR(), recordings, [("en", 1.0)] * 6, TranscribeOptions(), 4)
    segments = decoder.run(regions)
    for k, segs in enumerate(segments):
        text = "".join(s.text for s in segs).split()
        assert text and set(text) == {f"r{k}"}, (k, text)
    # the last recording came out empty: its neighbour's words were held, and thrown away once
    # the empty one, decoded again, said what the neighbour had got
    assert decoder.stats.counts["moved_words_caught"] >= 1


def test_speech_a_window_skipped_is_decoded_again():
    long = tone(0, 20.0)
    decoder = WindowDecoder(FakeASR(), [long], [("en", 1.0)], TranscribeOptions(), 8)
    (segs,) = decoder.run([[SpeechRegion(0.0, 20.0)]])
    starts = sorted(w.start for s in segs for w in s.words)
    assert max(b - a for a, b in zip(starts, starts[1:])) < 1.5  # before: a 4-s hole
    assert decoder.stats.counts["retry_pieces"] == 1


def test_a_recording_dropped_at_a_windows_end_is_decoded_again_and_its_neighbours_kept():
    recordings = [tone(k, 2.0 + k % 3) for k in range(4)]
    regions = [[SpeechRegion(0.0, a.duration)] for a in recordings]
    asr = DropsTheLast()
    decoder = WindowDecoder(asr, recordings, [("en", 1.0)] * 4, TranscribeOptions(), 4)
    segments = decoder.run(regions)
    for k, segs in enumerate(segments):
        text = "".join(s.text for s in segs).split()
        assert text and set(text) == {f"r{k}"}, (k, text)
    assert asr.windows[0] == [0, 1, 2, 3]
    assert asr.windows[1:] == [[3]]  # only the dropped one again; its neighbour's words were kept
    assert decoder.stats.counts["held_recordings"] == 1 and not decoder.stats.counts["moved_words_caught"]


class SkipsTheMiddle(Recognizer):
    """Writes ``r<k>_<i>`` twice a second of recording k's tone, but in the first pass (timestamp
    tokens on) passes over 4-8 s of every stretch longer than 10 s; records each window's
    recordings per pass."""

    def __init__(self) -> None:
        self.windows: dict[bool, list[list[int]]] = {True: [], False: []}
        self.fitted: dict[bool, list[bool]] = {True: [], False: []}
        self.seconds: dict[bool, list[float]] = {True: [], False: []}

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        out = []
        for audio in audios:
            found = runs(audio)
            self.windows[timestamps].append(sorted({r for _, _, r in found}))
            self.fitted[timestamps].append(fit_input)
            self.seconds[timestamps].append(len(audio) / SAMPLE_RATE)
            ws = []
            for s, e, r in found:
                part = [dict(w, word=f"{w['word']}_{i}") for i, w in enumerate(words(s, e, r))]  # no repeats
                if timestamps and e - s > 10:
                    part = [w for w in part if not s + 4.0 <= w["start"] < s + 8.0]
                ws += part
            out.append(window_text(ws))
        return out


def test_skipped_speech_is_decoded_again_beside_its_own_files_only(monkeypatch):
    recordings = [tone(k, 20.0) for k in range(2)]
    regions = [[SpeechRegion(0.0, 20.0)] for _ in recordings]
    asr = SkipsTheMiddle()
    segments = WindowDecoder(asr, recordings, [("en", 1.0)] * 2, TranscribeOptions(), 8).run(regions)
    for k, segs in enumerate(segments):
        starts = sorted(w.start for s in segs for w in s.words)
        assert {w.word.strip().split("_")[0] for s in segs for w in s.words} == {f"r{k}"}
        assert max(b - a for a, b in zip(starts, starts[1:])) < 1.5  # the skipped 4 s came back
    # each file's skipped stretch in a window of its own: never beside another file's voice
    assert asr.windows[False] == [[0], [1]]
    # ... encoded as its few seconds (the first pass as 30 s)
    assert asr.fitted == {True: [False, False], False: [True, True]}

    # two shards of one file: their skipped stretches share one window (when it has room for
    # both and the 2 s between recordings)
    monkeypatch.setattr(passes, "RETRY_WINDOW", 15.0)
    asr = SkipsTheMiddle()
    WindowDecoder(asr, recordings, [("en", 1.0)] * 2, TranscribeOptions(), 8, files=[0, 0]).run(regions)
    assert asr.windows[False] == [[0, 1]]


def test_speech_skipped_across_a_shard_boundary_is_only_decoded_again():
    """A window holding two shards of one file (a long recording's shard boundary) is trusted like
    a window of one shard: the stretch it skipped is decoded again on its own, not the shards'
    whole speech at a full encode; two files' speech in such a window is decoded again whole, as
    words may have moved between them."""
    recordings = [tone(k, 12.0) for k in range(2)]
    regions = [[SpeechRegion(0.0, 12.0)] for _ in recordings]
    asr = SkipsTheMiddle()
    segments = WindowDecoder(asr, recordings, [("en", 1.0)] * 2, TranscribeOptions(), 8, files=[0, 0]).run(regions)
    assert asr.windows[True] == [[0, 1]]  # the first pass only: no window decoded again whole
    assert asr.fitted[False] and all(asr.fitted[False])  # the skipped stretch, at its few seconds
    for k, segs in enumerate(segments):
        starts = sorted(w.start for s in segs for w in s.words)
        assert {w.word.strip().split("_")[0] for s in segs for w in s.words} == {f"r{k}"}
        assert max(b - a for a, b in zip(starts, starts[1:])) < 1.5  # the skipped 4 s came back

    asr = SkipsTheMiddle()
    WindowDecoder(asr, recordings, [("en", 1.0)] * 2, TranscribeOptions(), 8, files=[0, 1]).run(regions)
    assert asr.windows[True][0] == [0, 1] and len(asr.windows[True]) > 1  # two files: decoded again


def test_skipped_speech_is_decoded_again_in_short_windows():
    long = tone(0, 62.0)
    regions = [[SpeechRegion(0.0, 20.0), SpeechRegion(21.0, 41.0), SpeechRegion(42.0, 62.0)]]
    asr = SkipsTheMiddle()
    (segs,) = WindowDecoder(asr, [long], [("en", 1.0)], TranscribeOptions(), 8).run(regions)
    starts = sorted(w.start for s in segs for w in s.words)
    assert max(b - a for a, b in zip(starts, starts[1:])) < 2.0  # every skipped 4 s came back
    # three skipped stretches of 6 s with their context: 18 s, in two windows of at most 13 s
    # (one collage of all three before; Whisper wrote one sentence of eleven such stretches)
    assert len(asr.seconds[False]) == 2 and max(asr.seconds[False]) <= RETRY_WINDOW


class EndsAfterTheFirstStretch(SkipsTheMiddle):
    """As ``SkipsTheMiddle``, but a window of skipped speech (no timestamp tokens) gets words for
    its first stretch only, as Whisper sometimes ends its text early on such a collage."""

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        if timestamps:
            return super().decode(audios, language, options, align, timestamps)
        out = []
        for audio in audios:
            found = runs(audio)
            self.windows[timestamps].append(sorted({r for _, _, r in found}))
            s, e, r = found[0]
            ws = [dict(w, word=f"{w['word']}_{i}") for i, w in enumerate(words(s, e, r))]
            segs = [dict(start=ws[0]["start"], end=ws[-1]["end"], text="".join(w["word"] for w in ws), words=ws)]
            out.append(WindowText(segments=segs, avg_logprob=-0.2, no_speech_prob=0.01, temperature=0.0))
        return out


def test_skipped_speech_after_where_its_window_stopped_writing_is_decoded_once_more():
    long = tone(0, 41.0)
    regions = [[SpeechRegion(0.0, 20.0), SpeechRegion(21.0, 41.0)]]  # two windows, a skip in each
    asr = EndsAfterTheFirstStretch()
    decoder = WindowDecoder(asr, [long], [("en", 1.0)], TranscribeOptions(), 8)
    (segs,) = decoder.run(regions)
    starts = sorted(w.start for s in segs for w in s.words)
    assert max(b - a for a, b in zip(starts, starts[1:])) < 2.0  # (the 1-s gap between regions)
    # the retry window wrote its first stretch only: the second went once more
    assert asr.windows[False] == [[0], [0]]
    assert decoder.stats.counts["retry_again_pieces"] == 1


class StopsHalfwayOnce(SkipsTheMiddle):
    """As ``SkipsTheMiddle``, but the first window of skipped speech gets words for the first third
    of its audio only (Whisper ended its text early, inside a stretch); later ones get all."""

    def __init__(self, part: float = 1 / 3) -> None:
        super().__init__()
        self.part = part

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        if timestamps or self.windows[False]:
            return super().decode(audios, language, options, align, timestamps, fit_input)
        (audio,) = audios
        self.windows[False].append(sorted({r for _, _, r in runs(audio)}))
        s, e, r = runs(audio)[0]
        ws = [dict(w, word=f"{w['word']}_{i}") for i, w in enumerate(words(s, s + (e - s) * self.part, r))]
        segs = [dict(start=ws[0]["start"], end=ws[-1]["end"], text="".join(w["word"] for w in ws), words=ws)]
        return [WindowText(segments=segs, avg_logprob=-0.2, no_speech_prob=0.01, temperature=0.0)]


@pytest.mark.parametrize("part", [1 / 3, 1 / 18])  # 1/18: it wrote only the context before the stretch
def test_skipped_speech_after_where_its_window_stopped_inside_a_stretch_is_decoded_once_more(part):
    decoder = WindowDecoder(asr := StopsHalfwayOnce(part), [tone(0, 20.0)], [("en", 1.0)], TranscribeOptions(), 8)
    (segs,) = decoder.run([[SpeechRegion(0.0, 20.0)]])
    said = sorted((w.start, w.end) for s in segs for w in s.words)
    assert max(b[0] - a[0] for a, b in zip(said, said[1:])) < 1.5  # nothing of the skipped 4 s lost
    assert all(b[0] >= a[1] - 0.2 for a, b in zip(said, said[1:]))  # no word written twice
    assert sum(a < 4.1 for a, _ in said) == 8  # before the stretch: the first pass's words only
    assert asr.windows[False] == [[0], [0]] and decoder.stats.counts["retry_again_pieces"] == 1


def test_a_later_pass_with_fewer_windows_than_workers_is_spread_over_them():
    long = tone(0, 41.0)
    regions = [[SpeechRegion(0.0, 20.0), SpeechRegion(21.0, 41.0)]]  # a skip in each of two windows
    asr = SkipsTheMiddle()
    WindowDecoder(asr, [long], [("en", 1.0)], TranscribeOptions(), 8).run(regions)
    assert asr.windows[False] == [[0]]  # one worker: both skipped stretches in one window
    asr = SkipsTheMiddle()
    asr.replicas = 2  # two CPU workers: a window each, decoded at once
    (segs,) = WindowDecoder(asr, [long], [("en", 1.0)], TranscribeOptions(), 8).run(regions)
    assert asr.windows[False] == [[0], [0]]
    starts = sorted(w.start for s in segs for w in s.words)
    assert max(b - a for a, b in zip(starts, starts[1:])) < 2.0


def test_a_files_later_pass_is_spread_over_the_workers_alike_in_a_folder_and_alone():
    """Whether a later pass spreads a file's skipped speech over the workers is judged on the
    file's own windows, not on what else the pass holds: two files, each with one window of
    skipped stretches, made two windows in a folder and were not spread, and each file's
    stretches were decoded in other windows than alone (its words changed with its neighbours)."""
    regions = [SpeechRegion(0.0, 20.0), SpeechRegion(21.0, 41.0)]  # a skip in each of two windows

    def retry_windows(recordings: list[Audio]) -> list[tuple[int, float]]:
        asr = SkipsTheMiddle()
        asr.replicas = 2
        WindowDecoder(asr, recordings, [("en", 1.0)] * len(recordings), TranscribeOptions(), 8).run(
            [regions] * len(recordings))
        return sorted((recs[0], round(sec, 1)) for recs, sec in zip(asr.windows[False], asr.seconds[False]))

    alone = [retry_windows([tone(k, 41.0)]) for k in range(2)]
    together = retry_windows([tone(0, 41.0), tone(1, 41.0)])
    assert [len(a) for a in alone] == [2, 2]  # alone: each file's two stretches, a window each
    assert together == sorted(alone[0] + alone[1])


class SubmitsAhead(Recognizer):
    """Writes nothing; notes, as each call is submitted and as its texts are asked for, how many
    calls were submitted and not yet waited for."""

    def __init__(self) -> None:
        self.replicas, self.open, self.log = 2, 0, []

    def submit(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None,
               sources=None):
        self.open += 1
        self.log.append(("submit", len(audios), fit_input, self.open))
        texts = [WindowText(segments=[], avg_logprob=-0.2, no_speech_prob=0.9, temperature=0.0) for _ in audios]
        asr = self

        class Pending:
            def result(self):
                asr.log.append(("wait", len(audios), fit_input, asr.open))
                asr.open -= 1
                return texts

        return Pending()


def test_the_decoder_submits_the_next_batch_before_it_waits_for_one():
    """Calls go to the model up to ``AHEAD`` batches of windows ahead of the one waited for, so its
    copies go on to the next batch as they come free (``copies.CopyPool``); texts come back in
    order, and a call of other settings (a retry beside a window decoded again) goes at once."""
    from iam_cluster.pipeline.types import Piece, Window

    recs = [tone(0, 400.0)]
    windows = [Window(pieces=(Piece(recording=0, start=10.0 * k, end=10.0 * k + 5, offset=0.0),)) for k in range(20)]
    asr = SubmitsAhead()
    dec = WindowDecoder(asr, recs, [("en", 1.0)], TranscribeOptions(), 8)
    texts = dec._decode(windows, [False] * 20, first=True)
    assert len(texts) == 20 and dec.done == 20 and dec.stats.counts["windows"] == 20
    assert passes.AHEAD == 2
    assert asr.log == [("submit", 8, False, 1), ("submit", 8, False, 2), ("wait", 8, False, 2),
                       ("submit", 4, False, 2), ("wait", 8, False, 2), ("wait", 4, False, 1)]
    asr.log.clear()
    dec._decode(windows[:2], [True, False], first=False)
    assert asr.log == [("submit", 1, True, 1), ("submit", 1, False, 2), ("wait", 1, True, 2), ("wait", 1, False, 1)]


class RecordsTails(DropsTheLast):
    """``DropsTheLast``, noting which windows the decoder lets the model decode on (``tails``)."""

    def __init__(self) -> None:
        super().__init__()
        self.tails: list[tuple[list[int], bool]] = []

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        assert tails is not None and len(tails) == len(audios)
        out = super().decode(audios, language, options, align, timestamps, fit_input)
        self.tails += [(w, t) for w, t in zip(self.windows[-len(audios):], tails)]
        return out


def test_only_windows_of_one_file_are_decoded_on_past_where_their_text_stops():
    """Text written on without timestamp tokens could land in a neighbour's audio: a window of
    several files is never decoded on (its dropped last file is packed again instead); a window
    of one file's shards is."""
    asr = RecordsTails()
    recordings = [tone(0, 6.0), tone(1, 6.0), tone(2, 6.0)]
    regions = [[SpeechRegion(0.0, 6.0)] for _ in recordings]
    WindowDecoder(asr, recordings, [("en", 1.0)] * 3, TranscribeOptions(), 8).run(regions)
    assert asr.tails[0] == ([0, 1, 2], False)  # three files share the first window
    assert all(tail == (len(set(window)) == 1) for window, tail in asr.tails)
    shards = RecordsTails()  # the same audio as shards of one file
    WindowDecoder(shards, recordings, [("en", 1.0)] * 3, TranscribeOptions(), 8, files=[0, 0, 0]).run(regions)
    assert shards.tails[0] == ([0, 1, 2], True)


class WritesPastTheEnd(Recognizer):
    """Writes ``r<k>`` twice a second of recording k's tone and then a word ``end.`` aligned
    0.3 s after the tone stops (in the silence after it), as the aligner placed "dog." after the
    last piece of cathy_arctic_a0196 in a folder."""

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        out = []
        for audio in audios:
            ws = [w for s, e, r in runs(audio) for w in [*words(s, e, r), dict(word=" end.", start=e + 0.3, end=e + 0.3, probability=0.9)]]
            segs = [dict(start=ws[0]["start"], end=ws[-1]["end"], text="".join(w["word"] for w in ws), words=ws)]
            out.append(WindowText(segments=segs, avg_logprob=-0.2, no_speech_prob=0.01, temperature=0.0))
        return out


def test_a_files_last_word_aligned_past_its_speech_is_kept():
    """Clamped to the end of its piece (2.4196 s) and rounded to the millisecond (2.420), the last
    word lay past the piece and was clipped away: "...the footprints of the" without "dog."."""
    recordings = [tone(0, 3.0), tone(1, 3.0)]
    regions = [[SpeechRegion(0.0, 2.4196)], [SpeechRegion(0.0, 2.5)]]
    segments = WindowDecoder(WritesPastTheEnd(), recordings, [("en", 1.0)] * 2, TranscribeOptions(), 4).run(regions)
    texts = ["".join(s.text for s in segs) for segs in segments]
    assert texts[0].endswith(" end.") and texts[1].endswith(" end.")
    assert all(w.word != " end." or w.start <= 2.4196 + 0.001 for w in segments[0][-1].words)


class SkipsAndDrops(SkipsTheMiddle):
    """As ``SkipsTheMiddle``, and in a first-pass window of several recordings it writes nothing
    for the last one (so that recording is decoded again whole in the next pass)."""

    def decode(self, audios, language, options, align=True, timestamps=True, fit_input=False, tails=None, sources=None):
        out = super().decode(audios, language, options, align, timestamps, fit_input, tails)
        for i, audio in enumerate(audios):
            found = runs(audio)
            if timestamps and len({r for _, _, r in found}) > 1:
                last = found[-1]
                ws = [w for seg in out[i].segments for w in seg["words"] if not last[0] <= w["start"] < last[1]]
                segs = [dict(start=ws[0]["start"], end=ws[-1]["end"], text="".join(w["word"] for w in ws), words=ws)]
                out[i] = WindowText(segments=segs, avg_logprob=-0.2, no_speech_prob=0.01, temperature=0.0)
        return out


def test_skipped_speech_gets_short_windows_in_a_pass_that_also_decodes_recordings_again_whole():
    """A folder: the quiet opening of trn04, skipped, went into a 18-s collage in a pass that also
    decoded another recording again whole (the cap held only in passes of skipped speech alone),
    and Whisper wrote none of it; alone it got 13-s windows and its words."""
    recordings = [tone(0, 83.0), tone(1, 3.0), tone(2, 3.0)]
    regions = [[SpeechRegion(0.0, 20.0), SpeechRegion(21.0, 41.0), SpeechRegion(42.0, 62.0), SpeechRegion(63.0, 83.0)],
               [SpeechRegion(0.0, 3.0)], [SpeechRegion(0.0, 3.0)]]
    asr = SkipsAndDrops()
    segments = WindowDecoder(asr, recordings, [("en", 1.0)] * 3, TranscribeOptions(), 8).run(regions)
    # the long recording fills windows of its own; the two short ones share one, the last dropped
    assert [1, 2] in asr.windows[True] and all(w == [0] for w in asr.windows[True] if 0 in w)
    assert [2] in asr.windows[True][asr.windows[True].index([1, 2]) + 1 :]  # decoded again whole
    # three skipped stretches with their context (18 s) in that same pass: two windows, not one
    assert len(asr.seconds[False]) >= 2 and max(asr.seconds[False]) <= RETRY_WINDOW
    for k, segs in enumerate(segments):
        assert segs and {w.word.strip().split("_")[0] for s in segs for w in s.words} == {f"r{k}"}


class Verbatim(SeesWindows):
    """Writes ``r<k>@<t>`` for every half second of recording k's tone, ``t`` its offset in the
    window: the words say where each window was cut."""

    def said(self, found):
        return [dict(w, word=f"{w['word']}@{w['start']:.2f}") for s, e, r in found for w in words(s, e, r)]


def test_a_long_recording_gets_the_same_windows_in_a_folder_as_alone():
    """Nine long read recordings decoded as one folder came out with other words than each alone:
    packed after the previous file's last window, every window of a file was cut at other places.
    A file whose speech needs more than one window now has windows of its own; short files still
    share windows (the folder's speed)."""
    def regions_of(rec):
        if rec == 1:  # 75 s of speech in five regions
            return [SpeechRegion(15.0 * k, 15.0 * k + 14.0) for k in range(5)]
        return [SpeechRegion(0.0, 4.0)]

    recordings = [tone(0, 5.0), tone(1, 75.0), tone(2, 5.0), tone(3, 5.0)]
    regions = [regions_of(k) for k in range(4)]
    folder_asr = Verbatim()
    folder = WindowDecoder(folder_asr, recordings, [("en", 1.0)] * 4, TranscribeOptions(), 8).run(regions)
    alone_asr = Verbatim()
    alone = WindowDecoder(alone_asr, recordings[1:2], [("en", 1.0)], TranscribeOptions(), 8).run(regions[1:2])
    said = [[w.word for s in segs for w in s.words] for segs in (folder[1], alone[0])]
    assert said[0] == said[1] and said[0]
    assert all(set(w) == {1} for w in folder_asr.windows if 1 in w)  # no other file beside it
    assert [2, 3] in folder_asr.windows  # the short ones still packed together
