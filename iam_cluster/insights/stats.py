"""Talk time, turns, words per minute and questions, per speaker and for the whole meeting."""

from __future__ import annotations

from collections import defaultdict

from iam_cluster.insights import sentiment as sent
from iam_cluster.insights.sentences import speaker_of
from iam_cluster.insights.types import Question, SegmentSentiment, Sentence, SpeakerInsights
from iam_cluster.pipeline.types import Segment, Transcript


#: Question marks of the scripts Whisper writes (Latin, full-width CJK, Arabic, Greek).
QUESTION_MARKS = ("?", "？", "؟", "\u037e")


def seconds(seg: Segment) -> float:
    """A segment's duration (never negative)."""
    return max(0.0, seg.end - seg.start)


def word_count(seg: Segment) -> int:
    return len(seg.words) if seg.words else len(seg.text.split())


def spoken(transcript: Transcript) -> list[Segment]:
    """Segments that carry text."""
    return [s for s in transcript.segments if s.text.strip()]


def speech_time(transcript: Transcript) -> float:
    """Seconds covered by the segments with text: what the speakers' talk times add up to."""
    return round(sum(seconds(s) for s in spoken(transcript)), 3)


def per_minute(words: int, secs: float) -> float:
    return round(words * 60.0 / secs, 1) if secs > 0 else 0.0


def questions(sentences: list[Sentence]) -> list[Question]:
    """Sentences that end with a question mark (Whisper punctuates questions)."""
    return [Question(start=s.start, end=s.end, speaker=s.speaker, text=s.text)
            for s in sentences if s.text.rstrip().endswith(QUESTION_MARKS)]


def speakers(transcript: Transcript, sentences: list[Sentence], scores: list[SegmentSentiment],
             keywords: dict[str, list[str]] | None = None) -> list[SpeakerInsights]:
    """One entry per speaker, most talk time first.

    A turn is a maximal run of consecutive segments of one speaker; its length runs from its
    first segment's start to its last segment's end.
    """
    segments = spoken(transcript)
    talk: dict[str, float] = defaultdict(float)
    words: dict[str, int] = defaultdict(int)
    turns: dict[str, int] = defaultdict(int)
    longest: dict[str, float] = defaultdict(float)
    previous: str | None = None
    turn_start = 0.0
    for seg in segments:
        who = speaker_of(seg)
        talk[who] += seconds(seg)
        words[who] += word_count(seg)
        if who != previous:
            turns[who] += 1
            turn_start = seg.start
            previous = who
        longest[who] = max(longest[who], seg.end - turn_start)
    asked: dict[str, int] = defaultdict(int)
    for q in questions(sentences):
        asked[q.speaker] += 1
    by_speaker: dict[str, list[SegmentSentiment]] = defaultdict(list)
    for s in scores:
        by_speaker[s.speaker].append(s)
    total = sum(talk.values())
    out = []
    for who in sorted(talk, key=lambda k: (-talk[k], k)):
        mood = sent.weighted_mean(by_speaker[who])
        out.append(SpeakerInsights(
            speaker=who, talk_time=round(talk[who], 3), talk_share=round(talk[who] / total, 4) if total else 0.0,
            turns=turns[who], words=words[who], words_per_minute=per_minute(words[who], talk[who]),
            questions=asked[who], longest_turn=round(longest[who], 3), sentiment=mood,
            sentiment_label=sent.label(mood), keywords=(keywords or {}).get(who, [])))
    return out
