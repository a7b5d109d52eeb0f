"""A meeting's speaker names replace its labels everywhere a transcript carries them."""

from __future__ import annotations

from iam_cluster.api.meeting_media import with_speaker_names
from iam_cluster.pipeline.export import to_rttm
from iam_cluster.pipeline.types import Segment, Transcript, Turn, Word


def test_names_reach_segments_words_speakers_and_turns():
    t = Transcript(source="m.wav", duration=5.0, language="en", language_probability=1.0,
                   segments=[Segment(id=0, start=0.0, end=1.0, text=" hi", speaker="SPEAKER_00",
                                     words=[Word(start=0.1, end=0.9, word=" hi", probability=0.9,
                                                 speaker="SPEAKER_00")]),
                             Segment(id=1, start=2.0, end=3.0, text=" yes", speaker="SPEAKER_01")],
                   speakers=["SPEAKER_00", "SPEAKER_01"],
                   speaker_turns=[Turn(0.0, 1.2, "SPEAKER_00"), Turn(1.0, 3.0, "SPEAKER_01")])
    named = with_speaker_names(t, {"SPEAKER_00": "Ada Lovelace"})
    assert named.speakers == ["Ada Lovelace", "SPEAKER_01"]
    assert [s.speaker for s in named.segments] == ["Ada Lovelace", "SPEAKER_01"]
    assert named.segments[0].words[0].speaker == "Ada Lovelace"
    assert named.speaker_turns == [Turn(0.0, 1.2, "Ada Lovelace"), Turn(1.0, 3.0, "SPEAKER_01")]
    assert "Ada_Lovelace" in to_rttm(named) and "SPEAKER_00" not in to_rttm(named)
    assert with_speaker_names(t, {}) is t
