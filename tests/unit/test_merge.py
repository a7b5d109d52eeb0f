"""Merge: words get the speaker whose turn they overlap most; segments split where speakers change."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from iam_cluster.pipeline.merge import assign_speakers, merge, speaker_labels
from iam_cluster.pipeline.types import Diarization, Segment, Transcript, Turn, Word


def _assign(words: list[tuple[float, float]], turns: list[Turn]) -> list[str | None]:
    return assign_speakers(np.array([w[0] for w in words]), np.array([w[1] for w in words]), turns)


def _word(start: float, end: float, text: str) -> Word:
    return Word(start=start, end=end, word=f" {text}", probability=0.9)


def _transcript(*segments: Segment) -> Transcript:
    return Transcript(source="a.wav", duration=30.0, language="en", language_probability=1.0,
                      segments=list(segments), model="tiny.en", confidence=0.9)


def _seg(i: int, start: float, end: float, text: str, words: list[Word] | None = None) -> Segment:
    return Segment(id=i, start=start, end=end, text=text, words=words or [], avg_logprob=-0.3)


TWO = [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B")]


# -- assign_speakers --------------------------------------------------------------------------


def test_word_across_a_boundary_goes_to_the_larger_overlap():
    assert _assign([(1.5, 2.8), (1.0, 2.4)], TWO) == ["B", "A"]


def test_equal_overlap_goes_to_the_earlier_turn():
    assert _assign([(1.5, 2.5)], TWO) == ["A"]


def test_words_in_gaps_go_to_the_nearest_turn():
    turns = [Turn(1.0, 2.0, "A"), Turn(5.0, 6.0, "B")]
    words = [(2.2, 2.6), (4.0, 4.8), (0.0, 0.5), (8.0, 9.0), (3.3, 3.7)]
    # midpoints 2.4 (A 0.4 away), 4.4 (B 0.6), before all turns, after all, 3.5 (equidistant)
    assert _assign(words, turns) == ["A", "B", "A", "B", "A"]


def test_overlapping_turns():
    turns = [Turn(4.0, 10.0, "B"), Turn(0.0, 5.0, "A")]  # unsorted, overlapping
    assert _assign([(4.2, 5.5), (4.0, 4.6), (1.0, 2.0)], turns) == ["B", "A", "A"]


def test_long_turn_enclosing_short_ones_is_still_found():
    # The word at 8-9 overlaps only A, which starts long before B and C end: the search must
    # look back through the running maximum of turn ends, not the ends of the latest turns.
    turns = [Turn(0.0, 10.0, "A"), Turn(1.0, 2.0, "B"), Turn(3.0, 4.0, "C")]
    # Inside B and C the word overlaps A just as much: ties go to the earlier turn.
    assert _assign([(8.0, 9.0), (1.2, 1.8), (3.0, 4.0)], turns) == ["A", "A", "A"]


def test_zero_length_word_inside_a_turn():
    assert _assign([(3.0, 3.0)], TWO) == ["B"]


def test_no_turns_gives_none():
    assert _assign([(0.0, 1.0), (1.0, 2.0)], []) == [None, None]
    assert _assign([], TWO) == []


def _naive(words, turns):
    turns = sorted(turns, key=lambda t: (t.start, t.end))
    out = []
    for s, e in words:
        overlaps = [min(e, t.end) - max(s, t.start) for t in turns]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0:
            mid = (s + e) / 2
            best = int(np.argmin([max(t.start - mid, 0) + max(mid - t.end, 0) for t in turns]))
        out.append(turns[best].speaker)
    return out


def test_agrees_with_a_brute_force_search():
    rng = np.random.default_rng(7)
    for _ in range(50):
        starts = np.sort(rng.uniform(0, 60, rng.integers(1, 12)))
        turns = [Turn(float(s), float(s + rng.uniform(0.2, 15)), f"S{rng.integers(4)}") for s in starts]
        w_start = rng.uniform(0, 70, 40)
        words = [(float(s), float(s + rng.uniform(0, 1.5))) for s in w_start]
        assert _assign(words, turns) == _naive(words, turns)


# -- merge ------------------------------------------------------------------------------------


def test_a_diarization_without_turns_gives_all_speech_one_speaker():
    t = _transcript(
        _seg(0, 0.0, 2.6, " Hello there.", [_word(0.1, 1.0, "Hello"), _word(1.2, 2.5, "there.")]),
        _seg(1, 3.0, 4.0, " No words."),
    )
    out = merge(t, Diarization(turns=[]))
    assert [(s.start, s.end, s.text) for s in out.segments] == [(s.start, s.end, s.text) for s in t.segments]
    assert out.speakers == ["SPEAKER_00"]
    assert all(s.speaker == "SPEAKER_00" for s in out.segments)
    assert all(w.speaker == "SPEAKER_00" for s in out.segments for w in s.words)
    assert merge(_transcript(), Diarization(turns=[])).speakers == []


def test_split_where_the_speaker_changes():
    words = [_word(0.0, 1.0, "one"), _word(1.0, 1.9, "two"), _word(2.1, 3.0, "three"),
             _word(3.2, 3.9, "four")]
    t = _transcript(_seg(0, 0.0, 4.0, " one two three four", words), _seg(1, 5.0, 6.0, " later"))
    out = merge(t, Diarization(turns=[Turn(0.0, 2.0, "x"), Turn(2.0, 3.1, "y"), Turn(3.1, 4.5, "x")]))
    got = [(s.id, s.start, s.end, s.text, s.speaker, [w.speaker for w in s.words]) for s in out.segments]
    assert got == [
        (0, 0.0, 1.9, " one two", "SPEAKER_00", ["SPEAKER_00", "SPEAKER_00"]),
        (1, 2.1, 3.0, " three", "SPEAKER_01", ["SPEAKER_01"]),
        (2, 3.2, 3.9, " four", "SPEAKER_00", ["SPEAKER_00"]),
        (3, 5.0, 6.0, " later", "SPEAKER_00", []),  # no words: its span is nearest to x's turn
    ]
    assert all(s.avg_logprob == -0.3 for s in out.segments)  # the other fields are carried over
    assert out.speakers == ["SPEAKER_00", "SPEAKER_01"]


def test_one_speaker_segment_keeps_its_span_and_text():
    words = [_word(0.3, 1.0, "Hi,"), _word(1.1, 1.8, "you.")]
    t = _transcript(_seg(0, 0.0, 2.0, " Hi, you!", words))
    (seg,) = merge(t, Diarization(turns=[Turn(0.0, 2.0, "z")])).segments
    assert (seg.start, seg.end, seg.text, seg.speaker) == (0.0, 2.0, " Hi, you!", "SPEAKER_00")


def test_labels_follow_first_appearance_in_time():
    turns = [Turn(9.0, 12.0, "spk1"), Turn(0.0, 3.0, "spk9"), Turn(4.0, 8.0, "spk1"),
             Turn(12.0, 14.0, "spk5")]
    assert speaker_labels(turns) == {"spk9": "SPEAKER_00", "spk1": "SPEAKER_01", "spk5": "SPEAKER_02"}
    t = _transcript(_seg(0, 0.5, 2.5, " a"), _seg(1, 4.5, 7.5, " b"), _seg(2, 12.5, 13.5, " c"))
    out = merge(t, Diarization(turns=turns))
    assert [s.speaker for s in out.segments] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    assert out.speakers == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]


def test_speakers_lists_only_those_given_text():
    turns = [Turn(0.0, 2.0, "a"), Turn(2.0, 2.1, "b"), Turn(2.1, 5.0, "c")]
    t = _transcript(_seg(0, 0.0, 1.8, " x"), _seg(1, 3.0, 5.0, " y"))
    out = merge(t, Diarization(turns=turns))
    assert out.speakers == ["SPEAKER_00", "SPEAKER_02"]


def test_overlapping_turns_in_merge():
    words = [_word(0.0, 1.0, "a"), _word(4.2, 5.5, "b")]
    t = _transcript(_seg(0, 0.0, 5.5, " a b", words))
    out = merge(t, Diarization(turns=[Turn(0.0, 5.0, "A"), Turn(4.0, 10.0, "B")]))
    assert [(s.text, s.speaker) for s in out.segments] == [(" a", "SPEAKER_00"), (" b", "SPEAKER_01")]


def test_input_is_not_modified():
    words = [_word(0.0, 1.0, "a"), _word(2.5, 3.0, "b")]
    t = _transcript(_seg(0, 0.0, 3.0, " a b", words))
    before = copy.deepcopy(t)
    out = merge(t, Diarization(turns=TWO))
    assert t == before
    assert out is not t and len(out.segments) == 2
    assert (out.source, out.model, out.confidence) == (t.source, t.model, t.confidence)


@pytest.mark.parametrize("turns", [[], TWO])
def test_empty_transcript(turns):
    out = merge(_transcript(), Diarization(turns=turns))
    assert out.segments == [] and out.speakers == []


def test_the_turns_of_speakers_who_say_something_are_kept_whole():
    # "b" laughs (no words); "a" and "c" speak, "a" also without words at 9-10 s and over "c".
    turns = [Turn(0.0, 2.0, "a"), Turn(2.5, 4.0, "b"), Turn(4.0, 8.0, "c"), Turn(7.0, 8.0, "a"), Turn(9.0, 10.0, "a")]
    t = _transcript(_seg(0, 0.0, 1.8, " hi", [_word(0.2, 1.5, "hi")]),
                    _seg(1, 4.2, 6.0, " well", [_word(4.3, 5.9, "well")]))
    out = merge(t, Diarization(turns=turns))
    assert out.speakers == ["SPEAKER_00", "SPEAKER_02"]
    assert out.speaker_turns == [Turn(0.0, 2.0, "SPEAKER_00"), Turn(4.0, 8.0, "SPEAKER_02"),
                                 Turn(7.0, 8.0, "SPEAKER_00"), Turn(9.0, 10.0, "SPEAKER_00")]


def test_no_turns_are_made_up_where_the_diarizer_heard_no_voice():
    t = _transcript(_seg(0, 0.0, 1.8, " hi", [_word(0.2, 1.5, "hi")]))
    out = merge(t, Diarization(turns=[]))
    assert out.speakers == ["SPEAKER_00"] and out.speaker_turns == []
    assert merge(_transcript(), Diarization(turns=TWO)).speaker_turns == []  # nobody says anything
