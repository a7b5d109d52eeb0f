"""RTTM export and our small RTTM reader, checked against pyannote's own reader and metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from iam_cluster.pipeline.export import FORMATS, load_rttm, parse_formats, render, to_rttm, write
from iam_cluster.pipeline.types import Segment, Transcript, Turn

DATA = Path(__file__).resolve().parent.parent / "data"


def _seg(i: int, start: float, end: float, speaker: str | None, text: str = " words") -> Segment:
    return Segment(id=i, start=start, end=end, text=text, speaker=speaker)


def _transcript(source: str = "/recordings/team meeting.final.wav") -> Transcript:
    return Transcript(
        source=source, duration=10.0, language="en", language_probability=1.0,
        speakers=["SPEAKER_00", "SPEAKER_01"],
        segments=[
            _seg(0, 0.0, 1.0, "SPEAKER_00"),
            _seg(1, 1.2, 2.0, "SPEAKER_00"),  # 0.2 s after the previous one: same turn
            _seg(2, 2.0, 3.0, "SPEAKER_01"),
            _seg(3, 3.0, 4.0, None),  # no speaker: left out, and does not break a run
            _seg(4, 4.4, 5.0, "SPEAKER_01"),  # 1.4 s after SPEAKER_01's last end: a new turn
            _seg(5, 5.0004, 6.25, "SPEAKER_00"),
            _seg(6, 6.75, 7.5, "SPEAKER_00"),  # exactly 0.5 s: a new turn
        ],
    )


EXPECTED = [
    "SPEAKER team_meeting.final 1 0.000 2.000 <NA> <NA> SPEAKER_00 <NA> <NA>",
    "SPEAKER team_meeting.final 1 2.000 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>",
    "SPEAKER team_meeting.final 1 4.400 0.600 <NA> <NA> SPEAKER_01 <NA> <NA>",
    "SPEAKER team_meeting.final 1 5.000 1.250 <NA> <NA> SPEAKER_00 <NA> <NA>",
    "SPEAKER team_meeting.final 1 6.750 0.750 <NA> <NA> SPEAKER_00 <NA> <NA>",
]


def test_registered():
    assert "rttm" in FORMATS
    assert parse_formats("json,rttm") == ["json", "rttm"]
    assert render(_transcript(), "rttm") == to_rttm(_transcript())


def test_renders_one_line_per_speaker_run():
    assert to_rttm(_transcript()).splitlines() == EXPECTED
    assert to_rttm(_transcript()).endswith("\n")


def test_close_same_speaker_segments_merge_even_across_unlabelled_ones():
    t = _transcript()
    t.segments = [_seg(0, 0.0, 1.0, "A"), _seg(1, 1.0, 1.3, None), _seg(2, 1.4, 2.0, "A")]
    assert to_rttm(t) == "SPEAKER team_meeting.final 1 0.000 2.000 <NA> <NA> A <NA> <NA>\n"


def test_overlapping_or_unsorted_segments_and_empty_spans():
    t = _transcript("x.wav")
    t.segments = [_seg(0, 3.0, 4.0, "A"), _seg(1, 0.0, 3.5, "A"), _seg(2, 5.0, 5.0, "B")]
    assert to_rttm(t) == "SPEAKER x 1 0.000 4.000 <NA> <NA> A <NA> <NA>\n"


def test_nothing_to_render():
    t = _transcript()
    t.segments = [_seg(0, 0.0, 1.0, None)]
    assert to_rttm(t) == ""
    t.segments = []
    assert to_rttm(t) == ""


def test_whitespace_never_splits_a_field():
    t = _transcript("dir with space/my\tfile name.mp3")
    t.segments = [_seg(0, 0.0, 1.0, "Ann Lee")]
    (line,) = to_rttm(t).splitlines()
    assert line.split() == ["SPEAKER", "my_file_name", "1", "0.000", "1.000",
                            "<NA>", "<NA>", "Ann_Lee", "<NA>", "<NA>"]


def test_round_trip_through_our_reader():
    turns = load_rttm(to_rttm(_transcript()))
    assert turns == {
        "team_meeting.final": [
            Turn(0.0, 2.0, "SPEAKER_00"),
            Turn(2.0, 3.0, "SPEAKER_01"),
            Turn(4.4, 5.0, "SPEAKER_01"),
            Turn(5.0, 6.25, "SPEAKER_00"),
            Turn(6.75, 7.5, "SPEAKER_00"),
        ]
    }


def test_reader_skips_noise_and_reports_bad_lines():
    text = (
        "# a comment\n\n"
        "SPKR-INFO f 1 <NA> <NA> <NA> unknown A <NA> <NA>\n"
        "SPEAKER f 1 1.440 11.872 <NA> <NA> MÉO069 <NA> <NA>\n"
        "SPEAKER g 1 0.5 0.25 <NA> <NA> B <NA> <NA>\n"
        "SPEAKER f 1 0.000 1.000 <NA> <NA> A <NA> <NA>\n"
    )
    assert load_rttm(text) == {
        "f": [Turn(0.0, 1.0, "A"), Turn(1.44, 13.312, "MÉO069")],
        "g": [Turn(0.5, 0.75, "B")],
    }
    with pytest.raises(ValueError, match="line 2 is not a valid SPEAKER line"):
        load_rttm("SPEAKER f 1 0.0 1.0 <NA> <NA> A <NA> <NA>\nSPEAKER f 1 zero 1.0 <NA> <NA> A\n")
    with pytest.raises(ValueError, match="line 1 is not"):
        load_rttm("SPEAKER f 1 0.0 1.0\n")
    with pytest.raises(ValueError, match="negative duration"):
        load_rttm("SPEAKER f 1 2.0 -1.0 <NA> <NA> A <NA> <NA>\n")


def test_reader_agrees_with_pyannote_database():
    util = pytest.importorskip("pyannote.database.util")
    theirs = util.load_rttm(DATA / "sample.rttm")
    ours = load_rttm((DATA / "sample.rttm").read_text(encoding="utf-8"))
    assert set(ours) == set(theirs) == {"sample"}
    expected = sorted((round(s.start, 6), round(s.end, 6), label)
                      for s, _, label in theirs["sample"].itertracks(yield_label=True))
    assert [(t.start, t.end, t.speaker) for t in ours["sample"]] == expected


def test_written_rttm_scored_against_the_transcript():
    core = pytest.importorskip("pyannote.core")
    metrics = pytest.importorskip("pyannote.metrics.diarization")
    t = _transcript()
    reference = core.Annotation()
    for i, seg in enumerate(t.segments):
        if seg.speaker:
            reference[core.Segment(seg.start, seg.end), i] = seg.speaker
    (turns,) = load_rttm(to_rttm(t)).values()
    hypothesis = core.Annotation()
    for i, turn in enumerate(turns):
        hypothesis[core.Segment(turn.start, turn.end), i] = turn.speaker
    # Merging pauses under 0.5 s adds 0.2 s of speech to SPEAKER_00 (1.0 -> 1.2); nothing else.
    der = metrics.DiarizationErrorRate(collar=0.0, skip_overlap=False)
    details = der(reference, hypothesis, uem=core.Timeline([core.Segment(0, t.duration)]), detailed=True)
    assert details["confusion"] == pytest.approx(0.0, abs=1e-6)
    assert details["missed detection"] == pytest.approx(0.0, abs=1e-6)
    assert details["false alarm"] == pytest.approx(0.2, abs=2e-3)


def test_write(tmp_path):
    path = write(_transcript(), "rttm", tmp_path / "out.rttm")
    assert path.read_text(encoding="utf-8").splitlines() == EXPECTED


def test_the_diarizers_turns_are_written_when_the_transcript_has_them():
    """Speech without words keeps its speaker, two people talking at once both appear, and only
    touching turns of one speaker are joined (the diarizer's pauses are its own)."""
    t = _transcript()
    t.speaker_turns = [Turn(0.0, 2.5, "SPEAKER_00"), Turn(2.0, 3.0, "SPEAKER_01"), Turn(3.0, 3.5, "SPEAKER_01"),
                       Turn(3.6, 4.0, "SPEAKER_01"), Turn(8.0, 9.0, "SPEAKER_00")]
    assert to_rttm(t).splitlines() == [
        "SPEAKER team_meeting.final 1 0.000 2.500 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER team_meeting.final 1 2.000 1.500 <NA> <NA> SPEAKER_01 <NA> <NA>",
        "SPEAKER team_meeting.final 1 3.600 0.400 <NA> <NA> SPEAKER_01 <NA> <NA>",
        "SPEAKER team_meeting.final 1 8.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>",
    ]
    t.speaker_turns = []  # a transcript stored before turns were kept: its segments, as before
    assert to_rttm(t).splitlines() == EXPECTED
