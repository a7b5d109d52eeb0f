"""Meeting insights on constructed transcripts: sentences, action items, sentiment, speaker statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from iam_cluster.insights import InsightsOptions, compute_insights
from iam_cluster.insights.actions import find_actions, score
from iam_cluster.insights.report import to_json, to_markdown
from iam_cluster.insights.sentences import split_sentences
from iam_cluster.insights.sentiment import compound, timeline
from iam_cluster.insights.types import UNKNOWN_SPEAKER, Insights, SegmentSentiment
from iam_cluster.pipeline.types import Segment, Transcript, Word

DATA = Path(__file__).parents[1] / "data"


def make_transcript(turns: list[tuple[str | None, float, float, str]], words: bool = True,
                    language: str = "en") -> Transcript:
    """Segments from ``(speaker, start, end, text)``; words spread evenly over each segment."""
    segments = []
    for i, (speaker, start, end, text) in enumerate(turns):
        tokens = text.split()
        step = (end - start) / len(tokens)
        ws = [Word(start=round(start + k * step, 3), end=round(start + (k + 1) * step, 3), word=" " + t,
                   probability=0.9, speaker=speaker) for k, t in enumerate(tokens)] if words else []
        segments.append(Segment(id=i, start=start, end=end, text=" " + text, words=ws, speaker=speaker))
    duration = max(t[2] for t in turns) + 5.0
    return Transcript(source="t", duration=duration, language=language, language_probability=1.0,
                      segments=segments, speakers=sorted({t[0] for t in turns if t[0]}))


PLANNING = make_transcript([
    ("A", 0.0, 6.0, "Thanks for joining. The launch is in three weeks and the budget is approved."),
    ("B", 6.5, 11.0, "Great news, the beta customers love the new dashboard."),
    ("A", 11.5, 16.0, "I'll send the report by Friday."),
    ("B", 16.5, 21.0, "Can you share the slides with the sales team after the call?"),
    ("C", 21.5, 27.0, "The old importer is a disaster and it keeps crashing, which is terrible."),
    ("A", 27.5, 31.0, "Maria will update the pricing page next week."),
    ("C", 31.5, 34.0, "What about the mobile app?"),
])
SMALL_TALK = make_transcript([
    ("A", 0.0, 5.0, "The weather was lovely at the coast last weekend."),
    ("B", 5.5, 9.0, "We finished the migration two weeks ago."),
    ("A", 9.5, 13.0, "I think the new office looks much brighter than the old one."),
    ("B", 13.5, 16.0, "Did you watch the game yesterday?"),
])


def test_sentences_keep_speakers_order_and_word_times():
    t = make_transcript([("A", 0.0, 4.0, "First one here. Second one now."), ("B", 5.0, 7.0, "Third from B.")])
    sentences = split_sentences(t)
    assert [s.text for s in sentences] == ["First one here.", "Second one now.", "Third from B."]
    assert [s.speaker for s in sentences] == ["A", "A", "B"]
    assert [s.index for s in sentences] == [0, 1, 2]
    # Word times: 6 words over 4 s, so the second sentence starts at the fourth word.
    assert sentences[0].start == 0.0 and sentences[0].end == pytest.approx(2.0, abs=1e-3)
    assert sentences[1].start == pytest.approx(2.0, abs=1e-3) and sentences[1].end == 4.0
    assert (sentences[2].start, sentences[2].end) == (5.0, 7.0)


def test_sentences_without_words_are_interpolated_and_join_segments():
    t = make_transcript([("A", 0.0, 2.0, "This sentence runs"), ("A", 2.0, 4.0, "over two segments. Done.")],
                        words=False)
    sentences = split_sentences(t)
    assert [s.text for s in sentences] == ["This sentence runs over two segments.", "Done."]
    assert sentences[0].start == 0.0 and 3.0 < sentences[0].end < 4.0
    assert sentences[1].end == 4.0


def test_segments_without_speaker_are_unknown():
    t = make_transcript([(None, 0.0, 2.0, "Nobody diarized this.")])
    assert split_sentences(t)[0].speaker == UNKNOWN_SPEAKER


def test_action_items_found_in_commitments_and_none_in_small_talk():
    items = compute_insights(PLANNING).action_items
    texts = [a.text for a in items]
    assert texts == ["I'll send the report by Friday.",
                     "Can you share the slides with the sales team after the call?",
                     "Maria will update the pricing page next week."]
    report, share, pricing = items
    assert (report.kind, report.owner, report.due, report.speaker) == ("commitment", "A", "by Friday", "A")
    assert (report.start, report.end) == (11.5, 16.0)
    assert share.kind == "request" and share.speaker == "B"
    assert pricing.owner == "Maria" and pricing.due == "next week"
    assert compute_insights(SMALL_TALK).action_items == []


def _labelled() -> dict[str, list[tuple[bool, str]]]:
    rows = csv.DictReader((DATA / "action_items.tsv").open(encoding="utf-8"), delimiter="\t")
    out: dict[str, list[tuple[bool, str]]] = {}
    for r in rows:
        out.setdefault(r["split"], []).append((r["label"] == "1", r["text"]))
    return out


@pytest.mark.parametrize("split", ["dev", "heldout", "posthoc"])
def test_action_item_precision_and_recall_on_labelled_sentences(split):
    rows = _labelled()[split]
    assert len(rows) >= 40
    tp = fp = fn = 0
    for gold, text in rows:
        points, kind, _, _ = score(text)
        predicted = points >= InsightsOptions().action_threshold and kind is not None
        tp += predicted and gold
        fp += predicted and not gold
        fn += gold and not predicted
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    print(f"{split}: n={len(rows)} precision={precision:.3f} recall={recall:.3f}")
    assert precision >= 0.8 and recall >= 0.7


@pytest.mark.parametrize(("text", "sign"), [
    ("This is a great result, I'm really happy with how well the team did.", 1),
    ("Thank you so much, that was wonderful and very helpful.", 1),
    ("This is terrible, the release is a disaster and customers are angry.", -1),
    ("I hate how broken and useless this tool is.", -1),
    ("The meeting is on the third floor.", 0),
])
def test_sentiment_signs(text, sign):
    value = compound(text)
    assert (value >= 0.05) if sign > 0 else (value <= -0.05) if sign < 0 else (-0.05 < value < 0.05)


def test_sentiment_per_speaker_and_over_time():
    ins = compute_insights(PLANNING, InsightsOptions(timeline_seconds=10.0))
    mood = {s.speaker: s.sentiment_label for s in ins.speakers}
    assert mood["B"] == "positive" and mood["C"] == "negative"
    assert len(ins.segment_sentiment) == len(PLANNING.segments)
    assert [b.start for b in ins.timeline] == [0.0, 10.0, 20.0, 30.0]
    assert ins.timeline[-1].end == PLANNING.duration
    assert ins.timeline[0].label == "positive" and ins.timeline[2].label == "negative"


def test_timeline_weights_by_overlap():
    scores = [SegmentSentiment(segment=0, start=5.0, end=15.0, speaker="A", compound=1.0, label="positive"),
              SegmentSentiment(segment=1, start=15.0, end=20.0, speaker="B", compound=-1.0, label="negative")]
    bins = timeline(scores, 30.0, 10.0)
    assert [b.speech_seconds for b in bins] == [5.0, 10.0, 0.0]
    assert bins[1].compound == pytest.approx(0.0) and bins[2].label == "neutral"


def test_talk_time_sums_to_speech_time_and_counts_turns():
    ins = compute_insights(PLANNING)
    assert sum(s.talk_time for s in ins.speakers) == pytest.approx(ins.speech_time, abs=1e-6)
    assert ins.speech_time == pytest.approx(sum(s.end - s.start for s in PLANNING.segments))
    a = next(s for s in ins.speakers if s.speaker == "A")
    assert (a.turns, a.talk_time, a.longest_turn) == (3, 6.0 + 4.5 + 3.5, 6.0)
    assert a.words == 14 + 6 + 8 and a.words_per_minute == pytest.approx(a.words * 60 / a.talk_time, abs=0.1)
    assert sum(s.talk_share for s in ins.speakers) == pytest.approx(1.0, abs=1e-3)
    assert [q.text for q in ins.questions] == [
        "Can you share the slides with the sales team after the call?", "What about the mobile app?"]
    assert {s.speaker: s.questions for s in ins.speakers} == {"A": 0, "B": 1, "C": 1}


def test_summary_is_ordered_sentences_of_the_transcript():
    ins = compute_insights(PLANNING, InsightsOptions(summary_sentences=3))
    sentences = split_sentences(PLANNING)
    assert 1 <= len(ins.summary) <= 3
    assert [s.index for s in ins.summary] == sorted(s.index for s in ins.summary)
    for s in ins.summary:
        assert sentences[s.index].text == s.text and sentences[s.index].start == s.start
    assert max(s.score for s in ins.summary) == 1.0


def test_keywords_come_from_the_text_without_fillers():
    t = make_transcript([("A", 0.0, 10.0, "Yeah so the database migration is slow. Okay, um, the database "
                                          "migration needs a new index. I think the index fixes the migration.")])
    ins = compute_insights(t, InsightsOptions(keywords=5))
    words = [k.text.lower() for k in ins.keywords]
    assert words and any("migration" in w for w in words)
    assert not {"yeah", "okay", "um", "think"} & {w for k in words for w in k.split()}
    assert all(k.count >= 1 and 0 < k.score <= 1 for k in ins.keywords)
    assert ins.keywords[0].score == 1.0


def test_other_languages_skip_english_only_parts_with_a_warning():
    t = make_transcript([("A", 0.0, 5.0, "Ich schicke den Bericht bis Freitag. Das ist gut.")], language="de")
    ins = compute_insights(t)
    assert ins.action_items == [] and ins.segment_sentiment == [] and ins.sentiment_label == "neutral"
    assert any("English only" in w for w in ins.warnings)
    assert len(ins.summary) >= 1 and ins.speakers[0].talk_time == 5.0


def test_empty_transcript():
    t = Transcript(source="t", duration=3.0, language="en", language_probability=1.0, segments=[])
    ins = compute_insights(t)
    assert (ins.summary, ins.keywords, ins.action_items, ins.speakers, ins.words) == ([], [], [], [], 0)
    assert ins.words_per_minute == 0.0 and ins.timeline[0].speech_seconds == 0.0


def test_reports_render_and_round_trip():
    import msgspec

    ins = compute_insights(PLANNING, InsightsOptions(timeline_seconds=10.0))
    assert msgspec.json.decode(to_json(ins), type=Insights) == ins
    md = to_markdown(ins, "Launch sync")
    assert md.startswith("# Launch sync")
    assert "- [ ] **00:12** A: I'll send the report by Friday. (owner: A, due: by Friday)" in md
    assert "| A |" in md and "## Questions asked" in md and "## Tone over time" in md


def test_progress_hook_reports_the_insights_step():
    calls = []
    compute_insights(PLANNING, hook=lambda step, done, total: calls.append((step, done, total)))
    assert calls[0] == ("insights", 0, 3) and calls[-1] == ("insights", 3, 3)


def test_find_actions_threshold():
    sentences = split_sentences(PLANNING)
    assert len(find_actions(sentences, threshold=100.0)) == 0
    assert len(find_actions(sentences, threshold=1.0)) == 3
