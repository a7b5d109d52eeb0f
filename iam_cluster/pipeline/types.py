"""Typed hand-offs between pipeline stages; every time is float seconds on the original recording."""

from __future__ import annotations

import functools
from typing import Annotated, Literal, Protocol

import msgspec
import numpy as np

from iam_cluster.errors import OptionsError

SAMPLE_RATE = 16_000

Seconds = Annotated[float, msgspec.Meta(ge=0)]


class ProgressHook(Protocol):
    """Long work reports progress as ``hook(step, completed, total)`` (pyannote's convention)."""

    def __call__(self, step: str, completed: int, total: int) -> None: ...


def no_progress(step: str, completed: int, total: int) -> None:
    """The default hook: report nothing."""


#: int16 PCM to float: the scale of a full-scale sample.
PCM_SCALE = 1.0 / 32768


def to_float(samples: np.ndarray) -> np.ndarray:
    """float32 samples in [-1, 1] from stored ones (16-bit PCM or float32; a copy only for PCM)."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) * np.float32(PCM_SCALE)
    return np.asarray(samples, dtype=np.float32)


class Audio(msgspec.Struct, frozen=True):
    """A decoded recording at 16 kHz mono.

    ``samples`` are float32 in [-1, 1], or 16-bit PCM (int16), which is how the service keeps the
    recordings it transcribes: half the memory, so hours of audio fit in a worker. Stages read
    them through ``to_float`` / ``span`` a stretch at a time.
    """

    source: str
    samples: np.ndarray  # float32 or int16, shape (n,)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def span(self, start: float, end: float) -> np.ndarray:
        """float32 samples from ``start`` to ``end`` seconds."""
        return to_float(self.samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])


class SpeechRegion(msgspec.Struct, frozen=True):
    """A stretch of speech found by the VAD."""

    start: Seconds
    end: Seconds

    @property
    def duration(self) -> float:
        return self.end - self.start


class Piece(SpeechRegion, frozen=True, kw_only=True):
    """A slice of one recording placed inside a decoding window.

    ``start``/``end`` are on the recording's timeline, ``offset`` is where the slice begins inside
    the window; ``recording`` indexes the list of recordings the window was packed from.
    """

    recording: int
    offset: Seconds


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


class WindowText(msgspec.Struct):
    """Whisper's output for one window: segments with words, times in seconds inside the window."""

    segments: list[dict]
    avg_logprob: float
    no_speech_prob: float
    temperature: float


class WindowJob(msgspec.Struct, frozen=True):
    """One window sent to a remote ASR replica: samples (at most 30 s), language and options."""

    audio: np.ndarray
    language: str
    options: TranscribeOptions
    align: bool
    #: Let Whisper write timestamp tokens (off: it writes the whole window; see ``asr.decode``).
    timestamps: bool = True
    #: Encode the audio plus a short tail, not 30 s (windows of skipped speech; see ``asr.decode``).
    fit_input: bool = False
    #: Decode on where its text stops before its audio does (a window of one file; see ``asr.decode``).
    continue_tail: bool = True
    #: The one recording the window holds, unique across requests (None: packed from several);
    #: only one recording's windows share a CPU ``generate`` (``copies.cpu_parts``).
    source: str | None = None
    #: ``time.time()`` when the window was sent (how long it waited for a batch is a metric).
    submitted_at: float = 0.0


class Shard(msgspec.Struct, frozen=True):
    """A stretch of one recording: its audio and speech regions, times relative to ``offset``."""

    index: int
    offset: float
    audio: Audio
    regions: list[SpeechRegion]


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
    #: Who spoke when, as the diarizer heard it (sorted; overlapping where two people talk at
    #: once), for the speakers in ``speakers``: speech without words (a laugh, a backchannel the
    #: ASR did not write) keeps its speaker here, which segments cannot show. Empty without
    #: diarization. The RTTM export writes these.
    speaker_turns: list[Turn] = []
    #: The options the transcript was made with.
    options: TranscribeOptions | None = None

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
    #: Cosine similarity of two embeddings at or above which the diarizer that made this counts
    #: them as one voice (its own clustering's threshold); ``merge.join_shards`` links the
    #: speakers of a recording's shards with it. None: the backend gives none.
    same_voice: float | None = None

    @property
    def speakers(self) -> list[str]:
        """Labels in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self.turns))


class VadOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Silero VAD settings (faster-whisper's). The defaults were chosen by
    ``benchmarks/vad_sweep.py`` on jfk, the Harvard sentences, two AMI excerpts and stress cases
    built from them, and are reported on other files (``benchmarks/results/recall-*.md``); they
    apply to level-normalised audio (``pipeline/level.py``)."""

    threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.35
    #: Speech ends when the probability drops below this (None: ``threshold - 0.15``).
    neg_threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    min_speech_duration_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    min_silence_duration_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 160
    speech_pad_ms: Annotated[int, msgspec.Meta(ge=0, le=5_000)] = 600


@functools.cache
def whisper_languages() -> frozenset[str]:
    """The language codes Whisper knows (faster-whisper's list, imported on first use only, so
    processes that never transcribe stay light; a test checks it against a loaded model's)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


Speakers = Annotated[int, msgspec.Meta(ge=1, le=64)]
Prompt = Annotated[str, msgspec.Meta(max_length=1000)]
#: A prompt may run over several lines: the API lets tab, LF and CR through (see api/input_guard.py).
FreeTextPrompt = Annotated[str, msgspec.Meta(max_length=1000, extra={"free_text": True})]


class TranscribeOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a caller may choose per transcription; runtime knobs, not the model itself.

    Every rule is checked when the struct is built (by the constructor, ``msgspec.convert`` or a
    decoder), so an invalid combination never reaches a worker. Violations raise ``OptionsError``
    naming the field; rules that need the model (language, task) are in ``check_model``.
    """

    #: A Whisper language code; None detects it per recording (multilingual models).
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=16)] = 5
    #: Longest decoding window, in seconds (Whisper sees 30 s at most).
    chunk_length: Annotated[float, msgspec.Meta(gt=1, le=30)] = 30.0
    #: Silence inserted between packed pieces, so Whisper sees a pause at each seam.
    pack_gap: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.2
    #: Pack speech of several recordings into one window (the lever for many short clips).
    pack_recordings: bool = True
    word_timestamps: bool = True
    initial_prompt: FreeTextPrompt | None = None
    hotwords: Prompt | None = None
    #: Decoding temperatures, tried in turn while a window's output looks failed (repetitive or
    #: unlikely). One by default: on the dev sets the sampling fallback of Whisper's sequential
    #: decoder changed no word (``benchmarks/results/recall-*nofallback*.md``) and cost time on
    #: long recordings; pass e.g. ``(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)`` to have it (seeded, bounded).
    temperatures: Annotated[tuple[Annotated[float, msgspec.Meta(ge=0, le=1)], ...],
                            msgspec.Meta(min_length=1, max_length=10)] = (0.0,)
    compression_ratio_threshold: Annotated[float, msgspec.Meta(gt=0)] = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6
    #: Find speech with the VAD first (off: the whole recording is decoded, 30 s at a time).
    vad_filter: bool = True
    vad: VadOptions = VadOptions()
    #: Attribute words and segments to speakers (see ``pipeline/diarize``).
    diarize: bool = False
    num_speakers: Speakers | None = None
    min_speakers: Speakers | None = None
    max_speakers: Speakers | None = None

    def __post_init__(self) -> None:
        if self.language is not None and self.language not in whisper_languages():
            raise OptionsError("language", f"unknown language code {self.language!r}")
        counts = {"num_speakers": self.num_speakers, "min_speakers": self.min_speakers,
                  "max_speakers": self.max_speakers}
        given = [name for name, value in counts.items() if value is not None]
        if given and not self.diarize:
            raise OptionsError(given[0], "speaker counts need diarize=true")
        check_speaker_counts(self.num_speakers, self.min_speakers, self.max_speakers)

    def check_model(self, model: str, multilingual: bool) -> None:
        """Refuse what ``model`` cannot do: another language or translation on an English-only model.

        Raises:
            OptionsError: naming ``language`` or ``task``.
        """
        if multilingual:
            return
        if self.language not in (None, "en"):
            raise OptionsError("language", f"model {model!r} transcribes English only, not {self.language!r}")
        if self.task == "translate":
            raise OptionsError("task", f"model {model!r} is English-only and cannot translate")


def check_speaker_counts(num: int | None, low: int | None, high: int | None) -> None:
    """Refuse impossible speaker-count constraints (every diarizer and the options use this rule).

    Raises:
        OptionsError: naming the count at fault.
    """
    for name, value in (("num_speakers", num), ("min_speakers", low), ("max_speakers", high)):
        if value is not None and value < 1:
            raise OptionsError(name, f"{name} must be at least 1, not {value}")
    if num is not None and (low is not None or high is not None):
        raise OptionsError("num_speakers", "give either num_speakers or min_speakers/max_speakers, not both")
    if low is not None and high is not None and low > high:
        raise OptionsError("min_speakers", f"min_speakers ({low}) is greater than max_speakers ({high})")


def parse_options(data: object) -> TranscribeOptions:
    """``TranscribeOptions`` from JSON bytes or builtins, every failure an ``OptionsError`` naming its field."""
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data or b"{}", type=TranscribeOptions)
        return msgspec.convert(data or {}, TranscribeOptions)
    except msgspec.ValidationError as exc:
        raise OptionsError.from_validation(exc) from None
    except msgspec.DecodeError as exc:
        raise OptionsError("options", f"not valid JSON: {exc}") from None
