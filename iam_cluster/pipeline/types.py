"""Typed hand-offs between pipeline stages; every time is float seconds on the original recording."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import msgspec
import numpy as np

SAMPLE_RATE = 16_000

Seconds = Annotated[float, msgspec.Meta(ge=0)]


class ProgressHook(Protocol):
    """Long work reports progress as ``hook(step, completed, total)`` (pyannote's convention)."""

    def __call__(self, step: str, completed: int, total: int) -> None: ...


def no_progress(step: str, completed: int, total: int) -> None:
    """The default hook: report nothing."""


class Audio(msgspec.Struct, frozen=True):
    """A decoded recording: 16 kHz mono float32 samples in [-1, 1]."""

    source: str
    samples: np.ndarray  # float32, shape (n,)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class SpeechRegion(msgspec.Struct, frozen=True):
    """A stretch of speech found by the VAD."""

    start: Seconds
    end: Seconds

    @property
    def duration(self) -> float:
        return self.end - self.start


class Piece(msgspec.Struct, frozen=True):
    """A slice of one recording placed inside a decoding window.

    ``start``/``end`` are on the recording's timeline, ``offset`` is where the slice begins inside
    the window; ``recording`` indexes the list of recordings the window was packed from.
    """

    recording: int
    start: Seconds
    end: Seconds
    offset: Seconds

    @property
    def duration(self) -> float:
        return self.end - self.start


class Window(msgspec.Struct, frozen=True):
    """At most ``chunk_length`` seconds of speech (of one or several recordings) decoded as one."""

    pieces: tuple[Piece, ...]

    @property
    def duration(self) -> float:
        last = self.pieces[-1]
        return last.offset + last.duration

    @property
    def recordings(self) -> set[int]:
        return {p.recording for p in self.pieces}


class Word(msgspec.Struct, omit_defaults=True):
    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None


class Segment(msgspec.Struct, omit_defaults=True):
    id: int
    start: float
    end: float
    text: str
    words: list[Word] = []
    #: Mean log-probability of the segment's tokens (from word probabilities).
    avg_logprob: float = 0.0
    #: Whisper's probability that its decoding window held no speech.
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    speaker: str | None = None


class Transcript(msgspec.Struct, omit_defaults=True):
    source: str
    duration: float
    language: str
    language_probability: float
    segments: list[Segment]
    model: str = ""
    #: Seconds of audio that the VAD found to be speech.
    speech_duration: float = 0.0
    #: Mean word probability over the transcript, in [0, 1]; 0 for an empty transcript.
    confidence: float = 0.0
    speakers: list[str] = []

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


class Turn(msgspec.Struct, frozen=True):
    """One speaker talking from ``start`` to ``end``."""

    start: float
    end: float
    speaker: str


class Diarization(msgspec.Struct):
    """Who spoke when: sorted turns, plus one embedding per turn so that a cluster can relabel
    speakers consistently across the shards of one long recording."""

    turns: list[Turn]
    #: L2-normalised speaker embedding of each turn (same order as ``turns``); may be empty for
    #: backends that give none.
    embeddings: list[list[float]] = []

    @property
    def speakers(self) -> list[str]:
        """Labels in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self.turns))


class VadOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Silero VAD settings (faster-whisper's). The defaults were chosen by
    ``benchmarks/vad_sweep.py`` on jfk, the Harvard sentences, two AMI excerpts and stress cases
    built from them, and are reported on other files (``benchmarks/results/recall-*.md``); they
    apply to level-normalised audio (``pipeline/level.py``)."""

    threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.25
    #: Speech ends when the probability drops below this (None: ``threshold - 0.15``).
    neg_threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    min_speech_duration_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    min_silence_duration_ms: Annotated[int, msgspec.Meta(ge=0)] = 160
    speech_pad_ms: Annotated[int, msgspec.Meta(ge=0)] = 600


class TranscribeOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a caller may choose per transcription; runtime knobs, not the model itself."""

    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=16)] = 5
    #: Windows decoded by one CTranslate2 ``generate`` call.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    #: Longest decoding window, in seconds (Whisper sees 30 s at most).
    chunk_length: Annotated[float, msgspec.Meta(gt=1, le=30)] = 30.0
    #: Silence inserted between packed pieces, so Whisper sees a pause at each seam.
    pack_gap: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.2
    #: Pack speech of several recordings into one window (the lever for many short clips).
    pack_recordings: bool = True
    word_timestamps: bool = True
    initial_prompt: str | None = None
    hotwords: str | None = None
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    vad: VadOptions = VadOptions()
    #: Attribute words and segments to speakers (see ``pipeline/diarize``).
    diarize: bool = False
    num_speakers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
    min_speakers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
    max_speakers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
