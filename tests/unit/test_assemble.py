"""A recording's transcript from the segments its passes wrote: word times run forward."""

from __future__ import annotations

from iam_cluster.pipeline.run import untangle
from iam_cluster.pipeline.types import Segment, Word


def seg(*words: tuple[str, float, float]) -> Segment:
    ws = [Word(start=s, end=e, word=f" {w}", probability=0.9) for w, s, e in words]
    return Segment(id=0, start=ws[0].start, end=ws[-1].end, text="".join(w.word for w in ws), words=ws,
                   avg_logprob=-0.3, no_speech_prob=0.1)


def forward(segments: list[Segment]) -> bool:
    last_start, last_end = 0.0, 0.0
    for s in segments:
        if not last_start <= s.start <= s.end:
            return False
        last_start = s.start
        for w in s.words:
            if not (s.start <= w.start <= w.end <= s.end and w.start >= last_end):
                return False
            last_end = w.end
    return True


def test_segments_whose_words_cross_are_merged_in_time_order():
    """German speech through tiny.en: one pass wrote a sentence over 7 s, later ones a short
    phrase inside that span (109.5 s, inside "In ... sufathan."), and word times ran backwards."""
    segments = [seg(("ring", 109.105, 109.265), ("scenes.", 109.985, 110.205)),
                seg(("In", 109.205, 109.325), ("that", 110.245, 110.505), ("sufathan.", 115.945, 116.585)),
                seg(("He", 109.505, 109.545), ("didn't!", 109.825, 109.825))]
    segments.sort(key=lambda s: (s.start, s.end))
    out = untangle(segments)
    assert forward(out)
    assert len(out) == 1
    assert out[0].text.split() == ["ring", "In", "He", "didn't!", "scenes.", "that", "sufathan."]


def test_a_word_stretched_over_the_next_segments_start_ends_where_that_starts():
    segments = [seg(("yes", 1.0, 1.3), ("indeed", 1.4, 2.6)), seg(("so", 2.5, 2.7), ("then", 2.8, 3.0))]
    out = untangle(segments)
    assert forward(out) and len(out) == 2
    assert out[0].end == 2.5 and out[0].words[-1].end == 2.5 and out[1].start == 2.5
    assert [s.text for s in out] == [" yes indeed", " so then"]


def test_segments_in_order_are_left_as_they_are():
    segments = [seg(("a", 0.0, 0.5), ("b", 0.6, 1.0)), Segment(id=0, start=1.5, end=2.0, text=" (no words)"),
                seg(("c", 2.5, 3.0))]
    before = [(s.start, s.end, s.text) for s in segments]
    assert [(s.start, s.end, s.text) for s in untangle(segments)] == before
