"""Unit tests for the export stage: every format is checked with an independent parser."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import pytest
import srt
import webvtt

from iam_cluster.pipeline.export import (
    FORMATS,
    format_timestamp,
    parse_formats,
    render,
    transcript_from_json,
    write,
)
from iam_cluster.pipeline.types import Segment, Transcript, Word


def _transcript() -> Transcript:
    return Transcript(
        source="meeting.wav",
        duration=3700.0,
        language="en",
        language_probability=0.98,
        model="tiny.en",
        speech_duration=12.5,
        confidence=0.87,
        speakers=["SPEAKER_00", "SPEAKER_01"],
        segments=[
            Segment(
                id=0,
                start=0.0,
                end=2.5,
                text="  Hello world. ",
                words=[
                    Word(start=0.0, end=1.0, word=" Hello", probability=0.9, speaker="SPEAKER_00"),
                    Word(start=1.1, end=2.5, word=" world.", probability=0.8, speaker="SPEAKER_00"),
                ],
                avg_logprob=-0.2,
                speaker="SPEAKER_00",
            ),
            Segment(
                id=1,
                start=2.5,
                end=4.25,
                text=" Tom & Jerry <3 café > all",
                words=[Word(start=2.5, end=3.0, word=" Tom", probability=0.95)],
                speaker="SPEAKER_01",
            ),
            Segment(id=2, start=5.0, end=6.0, text="   "),
            Segment(
                id=3, start=59.9996, end=61.0, text="line one\n\nline two", speaker="SPEAKER_00"
            ),
            Segment(id=4, start=3661.0049, end=3663.9996, text=" Over an hour in."),
        ],
    )


#: (start ms, end ms, speaker, plain text) for every segment that has text, in order.
EXPECTED = [
    (0, 2_500, "SPEAKER_00", "Hello world."),
    (2_500, 4_250, "SPEAKER_01", "Tom & Jerry <3 café > all"),
    (60_000, 61_000, "SPEAKER_00", "line one line two"),
    (3_661_005, 3_664_000, None, "Over an hour in."),
]


def test_formats_registry():
    assert FORMATS == ("json", "txt", "srt", "vtt", "rttm")


@pytest.mark.parametrize(
    ("seconds", "sep", "expected"),
    [
        (0.0, ".", "00:00:00.000"),
        (59.9996, ".", "00:01:00.000"),
        (3599.9996, ",", "01:00:00,000"),
        (3661.0049, ",", "01:01:01,005"),
        (2 * 3600 + 5.5, ",", "02:00:05,500"),
        (-0.2, ".", "00:00:00.000"),
    ],
)
def test_format_timestamp(seconds, sep, expected):
    assert format_timestamp(seconds, sep) == expected


def test_srt_parses_and_matches_segments():
    subs = list(srt.parse(render(_transcript(), "srt")))
    assert [s.index for s in subs] == [1, 2, 3, 4]
    assert len(subs) == len(EXPECTED)
    for sub, (start, end, speaker, text) in zip(subs, EXPECTED, strict=True):
        assert sub.start == timedelta(milliseconds=start)
        assert sub.end == timedelta(milliseconds=end)
        assert sub.content == (f"[{speaker}] {text}" if speaker else text)


def test_vtt_parses_and_matches_segments():
    out = render(_transcript(), "vtt")
    assert out.startswith("WEBVTT\n")
    captions = webvtt.from_string(out).captions
    assert len(captions) == len(EXPECTED)
    for cap, (start, end, speaker, text) in zip(captions, EXPECTED, strict=True):
        assert round(cap.start_in_seconds * 1000 + cap.start_time.milliseconds) == start
        assert round(cap.end_in_seconds * 1000 + cap.end_time.milliseconds) == end
        assert cap.voice == speaker
        assert html.unescape(cap.text) == text
        if speaker:
            assert cap.raw_text.startswith(f"<v {speaker}>")


def test_vtt_escapes_markup():
    out = render(_transcript(), "vtt")
    assert "<v SPEAKER_01>Tom &amp; Jerry &lt;3 café &gt; all\n" in out
    assert "01:01:01.005 --> 01:01:04.000\nOver an hour in.\n" in out
    body = out.replace("<v SPEAKER_00>", "").replace("<v SPEAKER_01>", "")
    assert "<" not in body
    assert "-->" not in body.replace(" --> ", "")


def test_cue_end_is_after_start():
    t = Transcript(
        source="x", duration=2.0, language="en", language_probability=1.0,
        segments=[Segment(id=0, start=1.0, end=1.0, text="a"),
                  Segment(id=1, start=1.5, end=1.2, text="b")],
    )
    subs = list(srt.parse(render(t, "srt")))
    assert [(s.start, s.end) for s in subs] == [
        (timedelta(seconds=1), timedelta(seconds=1.01)),
        (timedelta(seconds=1.5), timedelta(seconds=1.51)),
    ]
    captions = webvtt.from_string(render(t, "vtt")).captions
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:01.000", "00:00:01.010"),
        ("00:00:01.500", "00:00:01.510"),
    ]


def test_json_round_trip_and_text():
    t = _transcript()
    out = render(t, "json")
    doc = json.loads(out)
    assert doc["text"] == t.text
    assert doc["text"] == (
        "Hello world. Tom & Jerry <3 café > all line one\n\nline two Over an hour in."
    )
    assert '\n  "source": "meeting.wav"' in out
    assert transcript_from_json(out) == t
    assert transcript_from_json(out.encode("utf-8")) == t


def test_txt_one_line_per_non_empty_segment():
    lines = render(_transcript(), "txt").splitlines()
    assert lines == [
        "SPEAKER_00: Hello world.",
        "SPEAKER_01: Tom & Jerry <3 café > all",
        "SPEAKER_00: line one line two",
        "Over an hour in.",
    ]


def test_empty_transcript():
    t = Transcript(source="x", duration=0.0, language="en", language_probability=1.0, segments=[])
    assert render(t, "txt") == ""
    assert list(srt.parse(render(t, "srt"))) == []
    assert webvtt.from_string(render(t, "vtt")).captions == []
    assert transcript_from_json(render(t, "json")) == t


def test_write_utf8(tmp_path):
    t = _transcript()
    path = write(t, "vtt", tmp_path / "out" / "meeting.vtt")
    assert path == tmp_path / "out" / "meeting.vtt"
    assert path.read_bytes().decode("utf-8") == render(t, "vtt")


def test_unknown_format():
    with pytest.raises(ValueError, match=r"'docx'.*json, txt, srt, vtt"):
        render(_transcript(), "docx")


def test_write_unknown_format_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        write(_transcript(), "docx", tmp_path / "a.docx")
    assert not (tmp_path / "a.docx").exists()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("json,srt", ["json", "srt"]),
        (" SRT , json,srt,", ["srt", "json"]),
        ("vtt", ["vtt"]),
        ("txt,json,srt,vtt,txt", ["txt", "json", "srt", "vtt"]),
    ],
)
def test_parse_formats(spec, expected):
    assert parse_formats(spec) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "no output format"),
        (" , ,", "no output format"),
        ("json,docx", r"unknown output format\(s\): docx; .*json, txt, srt, vtt"),
        ("pdf,srt,rtf", "pdf, rtf"),
    ],
)
def test_parse_formats_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_formats(spec)
