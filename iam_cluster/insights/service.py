"""Insights as the service runs them: options and endpoint from settings, and errors that never fail the caller."""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from iam_cluster.insights import compute_insights, make_chat_client
from iam_cluster.insights.types import Insights, InsightsOptions
from iam_cluster.pipeline.types import ProgressHook, Transcript, no_progress
from iam_cluster.settings import InsightsSettings

log = logging.getLogger(__name__)


class Outcome(msgspec.Struct, kw_only=True):
    """What one computation gave: insights, or the error that stopped it."""

    status: Literal["completed", "failed"]
    insights: Insights | None = None
    error: str | None = None
    backend: str | None = None


def options_from(settings: InsightsSettings, **overrides) -> InsightsOptions:
    """The computation's options: the settings' defaults, then any non-None override.

    Raises:
        msgspec.ValidationError: a value is out of its range (the message names the field).
    """
    values = {"summary_sentences": settings.summary_sentences, "keywords": settings.keywords,
              "timeline_seconds": settings.timeline_seconds}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return msgspec.convert(values, InsightsOptions)


def client_from(settings: InsightsSettings):
    """The chat client of the configured endpoint, or None (offline)."""
    return make_chat_client(settings.llm_base_url, settings.llm_model or "", settings.llm_api_key,
                            settings.llm_timeout_seconds, settings.llm_max_input_chars)


def compute(transcript: Transcript, settings: InsightsSettings, hook: ProgressHook = no_progress,
            options: InsightsOptions | None = None,
            reraise: tuple[type[BaseException], ...] = ()) -> Outcome | None:
    """Insights for a finished transcript; an error becomes a failed ``Outcome``, never an exception.

    Args:
        transcript: The transcript.
        settings: Defaults and the optional chat endpoint.
        hook: Progress hook (step ``insights``).
        options: Overrides the settings' defaults.
        reraise: Exceptions that must still stop the caller (a worker's lost lease, raised by ``hook``).

    Returns:
        The outcome, or None when insights are disabled.
    """
    if not settings.enabled:
        return None
    try:
        insights = compute_insights(transcript, options or options_from(settings), client_from(settings), hook)
    except reraise:
        raise
    except Exception as exc:
        log.exception("insights of %s failed; the transcript is kept", transcript.source)
        return Outcome(status="failed", error=f"{type(exc).__name__}: {exc}")
    return Outcome(status="completed", insights=insights, backend=insights.backend)
