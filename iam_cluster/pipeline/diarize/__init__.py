"""Diarization: who spoke when. One small protocol, two backends (embedded offline | pyannote)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.types import (
    Audio,
    Diarization,
    ProgressHook,
    SpeechRegion,
    check_speaker_counts,
    no_progress,
)

BACKENDS = ("embedded", "pyannote")
__all__ = ["BACKENDS", "Diarizer", "check_speaker_counts", "make_diarizer"]


class Diarizer(Protocol):
    """Finds speaker turns in a recording whose speech regions the VAD already found (None: not
    known; the backend looks at the whole recording)."""

    def __call__(
        self,
        audio: Audio,
        speech_regions: Sequence[SpeechRegion] | None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook = no_progress,
    ) -> Diarization: ...


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
