"""Packing speech into windows and mapping window times back to recordings (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.pipeline.types import Piece, Window, WindowText
from iam_cluster.pipeline.chunk import clip_segment, locate, numeral_echoes, pack, placement, rescued_range, split_long, unpack
from iam_cluster.pipeline.types import SpeechRegion as R


def two_recordings(gap: float = 1.0) -> Window:
    """Recording 0's [5, 8] at [0, 3] of the window, recording 1's [100, 104] ``gap`` later."""
    return Window(pieces=(Piece(recording=0, start=5, end=8, offset=0.0),
                          Piece(recording=1, start=100, end=104, offset=3.0 + gap)))


def test_pack_fills_windows_in_order_and_respects_length():
    regions = [[R(0, 10), R(12, 22), R(30, 40), R(50, 52)]]
    windows = pack(regions, chunk_length=30, gap=0.2)
    assert [len(w.pieces) for w in windows] == [2, 2]
    assert all(w.duration <= 30 for w in windows)
    first = windows[0].pieces
    assert first[0].offset == 0 and first[1].offset == pytest.approx(10.2)
    assert (first[1].start, first[1].end) == (12, 22)


def test_pack_across_recordings_and_groups():
    regions = [[R(0, 3)], [R(1, 4)], [R(0, 2)]]
    assert len(pack(regions, 30)) == 1
    assert len(pack(regions, 30, across_recordings=False)) == 3
    windows = pack(regions, 30, groups=["en", "en", "de"])
    assert [w.recordings for w in windows] == [{0, 1}, {2}]


def test_pack_empty_and_long_regions():
    assert pack([[], []]) == []
    parts = split_long(R(0, 65), 30)
    assert len(parts) == 3 and parts[-1].end == 65 and all(p.duration <= 30 for p in parts)
    assert all(w.duration <= 30 for w in pack([[R(0, 65)]], 30))


def test_locate_maps_times_and_sends_gap_times_to_the_nearer_piece():
    window = two_recordings()  # pieces at [0,3] and [4,8]
    idx, t = locate(window, np.array([0.0, 2.9, 3.2, 3.9, 5.0, 9.0]))
    assert idx.tolist() == [0, 0, 0, 1, 1, 1]
    assert t.tolist() == pytest.approx([5.0, 7.9, 8.0, 100.0, 101.0, 104.0])


def test_unpack_splits_a_segment_spanning_two_recordings():
    window = two_recordings()
    words = [
        dict(word=" one", start=0.5, end=1.0, probability=0.9),
        dict(word=" two", start=1.2, end=2.5, probability=0.8),
        dict(word=" three", start=4.5, end=5.5, probability=0.7),
    ]
    text = WindowText(segments=[dict(start=0.5, end=5.5, words=words)], avg_logprob=-0.2,
                      no_speech_prob=0.01, temperature=0.0)
    out = list(unpack(window, text))
    assert [rec for rec, _ in out] == [0, 1]
    first, second = out[0][1], out[1][1]
    assert first.text == " one two" and (first.start, first.end) == (5.5, 7.5)
    assert second.text == " three" and (second.start, second.end) == (100.5, 101.5)
    assert second.avg_logprob == pytest.approx(np.log(0.7), abs=1e-3)
    # mid-sentence, each word in its piece: one text read across two files (an audiobook cut into files)
    assert placement(window, text).doubtful == set()
    # ... the first word of the next recording aligned 1.5 s before its piece (nearer it than the first
    # piece, so placed by nearness): not heard as two recordings'
    window = two_recordings(gap=4.0)  # pieces at [0,3] and [7,11]
    words[2].update(start=5.5, end=5.5)
    words.append(dict(word=" four", start=7.5, end=8.0, probability=0.9))
    assert placement(window, text).doubtful == {0, 1}
    words[1]["word"] = " two."  # at a sentence end, the segment is taken as two recordings'
    assert placement(window, text).doubtful == set()


def test_a_segment_aligned_wholly_into_the_gap_is_doubted_not_split_by_nearness():
    """Measured (tiny.en, int8, CPU): psx_cards_001 ("ten of clubs", 1.1 s of speech) packed
    before LJ001-0001 came out as one segment " 10 of clubs." at 2.5-3.78 s, wholly in the 4-s
    silence between them; by nearness "10" went to the cards clip and "of clubs." to LJ001-0001,
    whose transcript then began with another file's words."""
    window = Window(pieces=(Piece(recording=0, start=0.0, end=1.1, offset=0.0),
                            Piece(recording=1, start=0.0, end=4.26, offset=5.1)))
    segments = [dict(start=2.5, end=3.78, words=[word(" 10", 2.5, 3.14), word(" of", 3.14, 3.78),
                                                   word(" clubs.", 3.78, 3.78)]),
                dict(start=4.94, end=9.0, words=[word(" Printing", 4.94, 5.58), word(" in", 5.58, 6.2)])]
    placed = placement(window, WindowText(segments=segments, avg_logprob=-0.2, no_speech_prob=0.0, temperature=0.0))
    assert placed.doubtful == {0, 1}


def test_a_short_recording_is_not_split_across_windows():
    regions = [[R(0, 25)], [R(0, 4), R(5, 9)], [R(0, 2)]]
    windows = pack(regions, 30, gap=0.5)
    assert [sorted(w.recordings) for w in windows] == [[0], [1, 2]]


def test_unpack_splits_pieces_far_apart_on_one_recording():
    (window,) = pack([[R(10, 12), R(60, 62)]], 30, gap=0.2)  # pieces at [0,2] and [2.2,4.2]
    words = [dict(word=" a", start=0.5, end=1.0, probability=0.9),
             dict(word=" b", start=2.5, end=3.0, probability=0.9)]
    text = WindowText(segments=[dict(start=0.5, end=3.0, words=words)], avg_logprob=-0.1,
                      no_speech_prob=0.0, temperature=0.0)
    out = list(unpack(window, text))
    assert [(rec, s.start, s.end) for rec, s in out] == [(0, 10.5, 11.0), (0, 60.3, 60.8)]


def test_pack_widens_the_gaps_between_recordings_into_spare_time():
    (window,) = pack([[R(0, 3)], [R(1, 4)], [R(0, 2)]], 30, recording_gap=2.0)
    offsets = [p.offset for p in window.pieces]
    assert offsets[1] - 3.0 == pytest.approx(4.0) and offsets[2] - (offsets[1] + 3.0) == pytest.approx(4.0)
    assert window.duration <= 30 - 4.0
    # a full window keeps the narrow gaps
    full = pack([[R(0, 13)], [R(0, 13)]], 30, recording_gap=2.0)[0]
    assert full.pieces[1].offset == pytest.approx(15.0)


def word(w: str, start: float, end: float) -> dict:
    return dict(word=w, start=start, end=end, probability=0.9)


def test_a_word_stretched_into_the_gap_goes_with_its_segment_and_only_a_lone_one_is_doubted():
    window = two_recordings(gap=3.0)  # pieces at [0,3] and [6,10]
    # " pure." aligned at 4.6 (nearer recording 1) but its segment's other words are recording 0's
    stretched = [dict(start=0.0, end=4.6, words=[word(" the", 0.2, 1.0), word(" air", 1.0, 2.9), word(" pure.", 4.6, 4.6)]),
                 dict(start=6.2, end=9.0, words=[word(" next", 6.2, 7.0), word(" one.", 7.0, 9.0)])]
    placed = placement(window, WindowText(segments=stretched, avg_logprob=-0.2, no_speech_prob=0.0, temperature=0.0))
    assert placed.texts == [" the air pure.", " next one."] and not placed.doubtful
    assert [rec for rec, _ in unpack(window, WindowText(segments=stretched, avg_logprob=-0.2,
                                                        no_speech_prob=0.0, temperature=0.0))] == [0, 1]
    # a word alone in the middle of the gap could be either recording's
    lone = [dict(start=4.3, end=4.7, words=[word(" who?", 4.3, 4.7)])]
    placed = placement(window, WindowText(segments=lone, avg_logprob=-0.2, no_speech_prob=0.0, temperature=0.0))
    assert placed.doubtful == {0, 1}


def test_a_word_stretched_over_the_silence_into_the_next_clip_stays_with_its_segment():
    """Measured (tiny.en, int8, CPU, the 60-file union folder in a shuffled order): LJ050-0131's
    last words "In this regard..." with "regard..." aligned from 7.28 s, inside its own piece, to
    10.54 s, 0.7 s into jfk's speech; by its midpoint (in the silence, 0.1 s nearer jfk) jfk's
    transcript began "regard... And so my fellow Americans"."""
    window = Window(pieces=(Piece(recording=0, start=0.0, end=6.27, offset=0.0),
                            Piece(recording=0, start=6.27, end=7.66, offset=6.47),
                            Piece(recording=1, start=0.0, end=2.78, offset=9.86)))
    segments = [dict(start=6.98, end=10.54, words=[word(" In", 6.98, 6.98), word(" this", 6.98, 7.28),
                                                     word(" regard...", 7.28, 10.54)]),
                dict(start=10.54, end=12.12, words=[word(" And", 10.54, 10.9), word(" so", 10.9, 11.3)])]
    placed = placement(window, WindowText(segments=segments, avg_logprob=-0.2, no_speech_prob=0.0, temperature=0.0))
    assert placed.texts == ["", " In this regard...", " And so"] and not placed.doubtful
    # alone in its segment, a word from one clip's speech into the other's could be either's
    alone = [dict(start=7.28, end=10.54, words=[word(" regard...", 7.28, 10.54)])]
    placed = placement(window, WindowText(segments=alone, avg_logprob=-0.2, no_speech_prob=0.0, temperature=0.0))
    assert placed.doubtful == {1, 2}


def _w(text: str, start: float, end: float):
    from iam_cluster.pipeline.types import Word

    return Word(start=start, end=end, word=text, probability=0.9)


def test_a_retry_keeps_a_word_of_its_context_the_earlier_pass_had_not_written():
    """LJ001-0005 in a folder: the first pass wrote "... as the invention" and skipped the rest;
    the retry, heard from a second earlier, wrote "the invention of the art of printing." with
    "of" just before the skipped stretch: it was lost."""
    known = [_w(" as", 5.655, 6.315), _w(" the", 6.315, 6.575), _w(" invention", 6.575, 6.875)]
    retry = [_w(" the", 6.175, 6.475), _w(" invention", 6.475, 6.875), _w(" of", 6.875, 7.175),
             _w(" the", 7.175, 7.295), _w(" art", 7.295, 7.435), _w(" printing.", 7.655, 7.915)]
    keep, piece = R(7.025, 8.11), R(6.17, 8.11)
    assert rescued_range(keep, piece, retry, known) == R(6.875, 8.11)
    # the words it re-read stay out; without an echo of the written words nothing is added
    assert rescued_range(keep, piece, retry[2:], known) == keep
    assert rescued_range(keep, piece, retry, []) == keep
    # a context word starting inside the last written word is that word again, not a new one
    early = [_w(" the", 6.175, 6.475), _w(" invention", 6.475, 6.7), _w(" shun", 6.7, 7.0)]
    assert rescued_range(keep, piece, early, known) == keep


def test_a_retry_keeps_a_word_after_its_stretch_before_the_words_written_after_it():
    known = [_w(" then", 3.0, 3.3), _w(" home.", 3.3, 3.8)]
    retry = [_w(" walked", 1.2, 1.7), _w(" slowly", 2.1, 2.95), _w(" then", 3.05, 3.3), _w(" home.", 3.3, 3.7)]
    keep, piece = R(1.0, 2.0), R(0.5, 3.9)
    assert rescued_range(keep, piece, retry, known) == R(1.0, 2.1)
    # one that runs into the first written word is that word heard again
    assert rescued_range(keep, piece, [retry[0], _w(" slowly", 2.1, 3.2), *retry[2:]], known) == keep
    assert rescued_range(keep, piece, retry[:2] + [_w(" them", 3.05, 3.3)], known) == keep


def test_a_retry_does_not_write_again_a_number_the_first_pass_squeezed_into_part_of_its_time():
    """ten_minutes: "zero one eight zero three" took 2.7 s; the first pass aligned "01803." to
    its last 0.9 s, the rest went to a retry, which wrote "01803" again ("01803 01803")."""
    known = [_w(" 90210.", 110.17, 111.05), _w(" 01803.", 113.11, 113.99)]
    keep = R(111.17, 112.81)
    retry = [_w(" 01803", 111.32, 112.32)]
    assert numeral_echoes(retry, known, keep) == retry
    # "90210. 01803." both aligned into the piece after the one where the first was said: the
    # retry of that earlier piece writes "90210" 1.2 s before the stretch's end
    assert numeral_echoes([_w(" 90210", 262.41, 263.41)], [_w(" 90210.", 265.83, 266.59)], R(262.26, 264.6))
    # not: another number, a short one ("okay, okay" holds for "5 5"), one written far away, or
    # a retry word outside its stretch
    assert not numeral_echoes([_w(" 01804", 111.32, 112.32)], known, keep)
    assert not numeral_echoes([_w(" 55", 111.32, 112.32)], [_w(" 55", 113.11, 113.99)], keep)
    assert not numeral_echoes([_w(" 01803", 111.32, 112.32)], [_w(" 01803.", 116.0, 116.9)], keep)
    assert not numeral_echoes([_w(" 01803", 110.0, 110.9)], known, keep)


def test_clip_segment_drops_the_words_given():
    from iam_cluster.pipeline.types import Segment

    words = [_w(" 01803", 1.0, 2.0), _w(" then", 2.0, 2.4)]
    seg = Segment(id=0, start=1.0, end=2.4, text=" 01803 then", words=words)
    out = clip_segment(seg, [R(0.0, 3.0)], [words[0]])
    assert out.text == " then" and out.words == [words[1]] and out.start == 2.0
    assert clip_segment(seg, [R(0.0, 3.0)], words) is None
    assert clip_segment(seg, [R(0.0, 3.0)]) is seg
