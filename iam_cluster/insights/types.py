"""Typed results of meeting insights; every time is float seconds on the recording's timeline."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

#: Label of segments that carry no speaker (a transcript made without diarization).
UNKNOWN_SPEAKER = "UNKNOWN"
SentimentLabel = Literal["positive", "neutral", "negative"]


class InsightsOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a caller may choose per computation; defaults come from ``InsightsSettings``."""

    #: Most sentences in the extractive summary.
    summary_sentences: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    #: Most keywords and key phrases for the meeting (per speaker: half as many).
    keywords: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    #: Longest key phrase, in words.
    keyphrase_words: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    #: Width of one bin of the sentiment timeline, in seconds.
    timeline_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: Least action-item score (see ``actions.score``) that makes a sentence a candidate.
    action_threshold: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: Ask the configured chat endpoint for a written summary and action items (when one is set).
    abstractive: bool = True


class Sentence(msgspec.Struct, frozen=True):
    """One sentence of the transcript, as spoken by one speaker."""

    index: int
    start: float
    end: float
    speaker: str
    text: str


class SummarySentence(msgspec.Struct, frozen=True):
    """A sentence chosen for the extractive summary, with its centrality score."""

    index: int
    start: float
    end: float
    speaker: str
    text: str
    score: float


class Keyword(msgspec.Struct, frozen=True):
    """A key word or phrase: ``score`` in (0, 1], higher is more important; ``count`` occurrences."""

    text: str
    score: float
    count: int


class ActionItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """A sentence that commits someone to a task, asks for one, or assigns one.

    ``owner`` is the speaker for first-person commitments, a name when one is addressed or named,
    else None; ``due`` is the deadline phrase as said ("by Friday"), if any.
    """

    start: float
    end: float
    speaker: str
    text: str
    kind: Literal["commitment", "request", "assignment"]
    confidence: float
    owner: str | None = None
    due: str | None = None
    #: Where it came from: the offline rules, or the chat endpoint.
    source: Literal["rules", "llm"] = "rules"


class Question(msgspec.Struct, frozen=True):
    start: float
    end: float
    speaker: str
    text: str


class SegmentSentiment(msgspec.Struct, frozen=True):
    """VADER's compound score of one transcript segment, in [-1, 1]."""

    segment: int
    start: float
    end: float
    speaker: str
    compound: float
    label: SentimentLabel


class TimelineBin(msgspec.Struct, frozen=True):
    """Sentiment of the speech inside ``[start, end)``, weighted by each segment's duration."""

    start: float
    end: float
    compound: float
    label: SentimentLabel
    speech_seconds: float


class SpeakerInsights(msgspec.Struct, frozen=True):
    """One speaker's share of the meeting."""

    speaker: str
    talk_time: float
    talk_share: float
    turns: int
    words: int
    words_per_minute: float
    questions: int
    longest_turn: float
    sentiment: float
    sentiment_label: SentimentLabel
    keywords: list[str] = []


class Insights(msgspec.Struct, omit_defaults=True):
    """Everything computed for one meeting from its transcript."""

    language: str
    duration: float
    #: Seconds covered by transcript segments (the sum of the speakers' talk time).
    speech_time: float
    words: int
    words_per_minute: float
    summary: list[SummarySentence]
    keywords: list[Keyword]
    action_items: list[ActionItem]
    questions: list[Question]
    speakers: list[SpeakerInsights]
    sentiment: float
    sentiment_label: SentimentLabel
    segment_sentiment: list[SegmentSentiment]
    timeline: list[TimelineBin]
    #: Written summary from the chat endpoint; None when offline or when it failed.
    abstract: str | None = None
    #: ``offline`` or ``llm:MODEL`` (the abstract and action items came from the endpoint).
    backend: str = "offline"
    #: What went wrong but did not stop the computation (an endpoint timeout, a skipped part).
    warnings: list[str] = []
    version: int = 1
