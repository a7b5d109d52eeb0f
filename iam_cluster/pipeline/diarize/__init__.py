"""Diarization: who spoke when. One small protocol, two backends (embedded offline | pyannote)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.types import Audio, Diarization, ProgressHook, SpeechRegion, no_progress

BACKENDS = ("embedded", "pyannote")


class Diarizer(Protocol):
    """Finds speaker turns in a recording whose speech regions the VAD already found."""

    def __call__(
        self,
        audio: Audio,
        speech_regions: Sequence[SpeechRegion],
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook = no_progress,
    ) -> Diarization: ...


def check_speaker_counts(num: int | None, low: int | None, high: int | None) -> None:
    """Reject impossible speaker-count constraints with a clear message."""
    for name, value in (("num_speakers", num), ("min_speakers", low), ("max_speakers", high)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    if num is not None and (low is not None or high is not None):
        raise ConfigError("give either num_speakers or min_speakers/max_speakers, not both")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"min_speakers ({low}) is greater than max_speakers ({high})")


def make_diarizer(backend: str = "embedded", **kwargs) -> Diarizer:
    """Build a diarizer by name: ``embedded`` (default, offline CPU) or ``pyannote``.

    Keyword arguments go to the backend's constructor.
    """
    if backend == "embedded":
        from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

        return EmbeddedDiarizer(**kwargs)
    if backend == "pyannote":
        from iam_cluster.pipeline.diarize.pyannote import PyannoteDiarizer

        return PyannoteDiarizer(**kwargs)
    raise ConfigError(f"unknown diarizer {backend!r}; choose from {', '.join(BACKENDS)}")
