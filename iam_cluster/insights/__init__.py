"""Meeting insights from a transcript: summary, keywords, action items, sentiment and speaker statistics.

Offline by default (pysbd, VADER, YAKE, TF-IDF LexRank: rules and statistics shipped inside their
packages, nothing fetched); a ``ChatClient`` adds a written summary and action items, falling back
to the offline ones when the endpoint fails.
"""

from __future__ import annotations

import logging

from iam_cluster.insights import actions, keywords, sentiment, stats, summary
from iam_cluster.insights.llm import ChatClient, LLMError, anchor
from iam_cluster.insights.sentences import split_sentences
from iam_cluster.insights.types import Insights, InsightsOptions
from iam_cluster.pipeline.types import ProgressHook, Transcript, no_progress

__all__ = ["ChatClient", "Insights", "InsightsOptions", "compute_insights", "make_chat_client"]

log = logging.getLogger(__name__)
#: The progress hook's step name.
STEP = "insights"


def compute_insights(transcript: Transcript, options: InsightsOptions = InsightsOptions(),
                     llm: ChatClient | None = None, hook: ProgressHook = no_progress) -> Insights:
    """Everything the insights give for one transcript.

    Parts that the transcript's language has no rules or lexicon for (sentiment and action items
    are English only) are left empty with a warning; an endpoint failure is a warning too.

    Args:
        transcript: A finished transcript, with speakers when it was diarized.
        options: Sizes and thresholds.
        llm: Chat endpoint for the abstract and action items; None stays offline.
        hook: Progress as ``hook("insights", done, total)``.

    Returns:
        The insights.
    """
    total = 4 if llm is not None and options.abstractive else 3
    hook(STEP, 0, total)
    language = (transcript.language or "en").split("-")[0].lower()
    warnings: list[str] = []
    sentences = split_sentences(transcript)
    english = language in actions.LANGUAGES
    scores = sentiment.segment_sentiment(transcript) if language in sentiment.LANGUAGES else []
    if not english:
        warnings.append(f"sentiment and action items are computed for English only, not {language!r}")
    if not keywords.supported(language):
        warnings.append(f"no keyword stop words for language {language!r}")
    hook(STEP, 1, total)
    top = summary.summarize(sentences, options.summary_sentences, language)
    found = keywords.extract(" ".join(s.text for s in sentences), language, options.keywords,
                             options.keyphrase_words)
    by_speaker = keywords.per_speaker(sentences, language, options.keywords // 2, options.keyphrase_words)
    items = actions.find_actions(sentences, options.action_threshold) if english else []
    hook(STEP, 2, total)
    speech = stats.speech_time(transcript)
    words = sum(stats.word_count(s) for s in stats.spoken(transcript))
    mood = sentiment.weighted_mean(scores)
    result = Insights(
        language=language, duration=transcript.duration, speech_time=speech, words=words,
        words_per_minute=stats.per_minute(words, speech), summary=top, keywords=found, action_items=items,
        questions=stats.questions(sentences), speakers=stats.speakers(transcript, sentences, scores, by_speaker),
        sentiment=mood, sentiment_label=sentiment.label(mood), segment_sentiment=scores,
        timeline=sentiment.timeline(scores, transcript.duration, options.timeline_seconds),
        warnings=warnings)
    hook(STEP, 3, total)
    if llm is not None and options.abstractive and sentences:
        try:
            reply = llm.complete(sentences)
        except LLMError as exc:
            log.warning("insights: chat endpoint failed (%s; %s); offline results kept", exc.message, exc.detail)
            result.warnings.append(f"abstractive backend failed, offline results kept: {exc.message}")
        else:
            result.abstract = reply.summary.strip() or None
            result.action_items = anchor(reply.action_items, sentences)
            result.backend = llm.name
        hook(STEP, 4, total)
    return result


def make_chat_client(base_url: str | None, model: str, api_key: str | None = None, timeout: float = 30.0,
                     max_input_chars: int = 48_000) -> ChatClient | None:
    """The chat client for these settings, or None when no endpoint is configured."""
    if not base_url:
        return None
    return ChatClient(base_url, model, api_key=api_key, timeout=timeout, max_input_chars=max_input_chars)
