"""The engine: VAD → pack windows → batched ASR → transcripts per recording (``Pipeline``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from iam_cluster.pipeline.asr import SpeechRecognizer
from iam_cluster.pipeline.chunk import pack, split_long, unpack
from iam_cluster.pipeline.types import (
    SAMPLE_RATE,
    Audio,
    Piece,
    ProgressHook,
    Segment,
    SpeechRegion,
    TranscribeOptions,
    Transcript,
    Window,
    no_progress,
)
from iam_cluster.pipeline.vad import SileroVad, VoiceActivityDetector, speech_duration

#: Whisper often stops before speech that ends in the last second of its 30-s input, expecting
#: the next window to carry on; windows are packed this much short of the chunk length.
TAIL_MARGIN = 1.0
#: Speech skipped at a window's end is decoded again only if it reaches this close to 30 s.
TAIL_RETRY_ZONE = 3.0


class Pipeline:
    """The transcription engine over decoded recordings; every runner (in process, Serve, Ray Data)
    drives it, so the same audio and options give the same words on every path.

    Args:
        asr: the speech recognizer (a loaded ``WhisperASR``, or a remote one on the Serve cluster).
        batch_size: windows handed to ``asr.decode`` per call.
        vad: the voice activity detector (Silero by default).
    """

    def __init__(self, asr: SpeechRecognizer, batch_size: int, vad: VoiceActivityDetector | None = None) -> None:
        self.asr = asr
        self.batch_size = batch_size
        self.vad = vad or SileroVad()

    def speech(self, audio: Audio, options: TranscribeOptions) -> list[SpeechRegion]:
        """The VAD stage for one recording."""
        return find_speech(audio, options, self.vad)

    def transcribe_regions(
        self, recordings: Sequence[Audio], regions: Sequence[Sequence[SpeechRegion]],
        options: TranscribeOptions, hook: ProgressHook = no_progress,
        languages: Sequence[tuple[str, float]] | None = None,
    ) -> list[Transcript]:
        """ASR over recordings whose speech regions are known; their windows share batches.

        Args:
            languages: ``(code, probability)`` per recording when already known (the shards of one
                recording share its language); detected here otherwise.

        Returns:
            One transcript per recording, in order.
        """
        options.check_model(self.asr.name, self.asr.is_multilingual)
        if languages is None:
            languages = self.languages(recordings, regions, options)
        segments: list[list[Segment]] = [[] for _ in recordings]
        windows = pack(
            regions, window_limit(options), options.pack_gap,
            across_recordings=options.pack_recordings, groups=[lang for lang, _ in languages],
        )
        missed = self._decode(windows, recordings, languages, options, segments, hook)
        if any(missed):
            # Speech Whisper skipped at the end of a window (it stops early when it expects the
            # next window to go on) gets one more pass, packed into fresh windows.
            retry = pack(missed, window_limit(options), options.pack_gap,
                         across_recordings=options.pack_recordings, groups=[lang for lang, _ in languages])
            self._decode(retry, recordings, languages, options, segments, no_progress)
        return [
            assemble(audio, segs, regs, lang, self.asr.name, options)
            for audio, segs, regs, lang in zip(recordings, segments, regions, languages)
        ]

    def _decode(self, windows, recordings, languages, options, segments, hook) -> list[list[SpeechRegion]]:
        """Decode windows in batches of one language; return the pieces left at windows' tails."""
        missed: list[list[SpeechRegion]] = [[] for _ in recordings]
        # Batches hold one language; a stable sort keeps each recording's windows in time order.
        step = self.batch_size
        by_language: dict[str, list[Window]] = {}
        for w in windows:
            by_language.setdefault(languages[w.pieces[0].recording][0], []).append(w)
        batches = [(lang, ws[i : i + step]) for lang, ws in by_language.items() for i in range(0, len(ws), step)]
        done = 0
        hook("asr", 0, len(windows))
        for language, batch in batches:
            audios = [window_audio(w, recordings) for w in batch]
            align = options.word_timestamps or any(len(w.recordings) > 1 for w in batch)
            for window, text in zip(batch, self.asr.decode(audios, language, options, align)):
                for rec, segment in unpack(window, text):
                    segments[rec].append(segment)
                for piece in tail_misses(window, text):
                    missed[piece.recording].append(SpeechRegion(piece.start, piece.end))
            done += len(batch)
            hook("asr", done, len(windows))
        return missed

    # -- helpers ----------------------------------------------------------------------------

    def languages(self, recordings: Sequence[Audio], regions: Sequence[Sequence[SpeechRegion]],
                  options: TranscribeOptions) -> list[tuple[str, float]]:
        """The language of each recording: given, English-only model, or detected on its speech."""
        if options.language or not self.asr.is_multilingual:
            return [(options.language or "en", 1.0)] * len(recordings)
        probe = [first_speech(a, r, 30.0) for a, r in zip(recordings, regions)]
        found: list[tuple[str, float]] = []
        for i in range(0, len(probe), self.batch_size):
            found.extend(self.asr.detect_languages(probe[i : i + self.batch_size]))
        return found


def find_speech(audio: Audio, options: TranscribeOptions, vad: VoiceActivityDetector) -> list[SpeechRegion]:
    """Speech regions of a recording: the VAD's, or the whole recording when ``vad_filter`` is off."""
    if not options.vad_filter:
        whole = SpeechRegion(0.0, audio.duration)
        return split_long(whole, window_limit(options)) if audio.duration > 0 else []
    return vad(audio, options.vad, max_region=window_limit(options))


def window_limit(options: TranscribeOptions) -> float:
    """Seconds of speech a window may hold: the chunk length less a tail Whisper tends to skip."""
    return max(1.0, options.chunk_length - TAIL_MARGIN)


def tail_misses(window: Window, text) -> list[Piece]:
    """Pieces Whisper skipped because they run into the end of its 30-s input.

    Only pieces after the last written word that reach into the last seconds of the input count:
    a piece skipped earlier in the window is Whisper judging it not to be speech.
    """
    ends = [w["end"] for seg in text.segments for w in seg["words"]] or [seg["end"] for seg in text.segments]
    if not ends:
        return []
    last = max(ends)
    missed = [p for p in window.pieces if p.offset >= last]
    if missed and missed[-1].offset + missed[-1].duration > 30.0 - TAIL_RETRY_ZONE:
        return missed
    return []


def window_audio(window: Window, recordings: Sequence[Audio]) -> np.ndarray:
    """The samples of a window: its pieces laid at their offsets, silence between them."""
    out = np.zeros(int(math.ceil(window.duration * SAMPLE_RATE)), dtype=np.float32)
    for p in window.pieces:
        src = recordings[p.recording].samples[int(p.start * SAMPLE_RATE) : int(p.end * SAMPLE_RATE)]
        at = int(p.offset * SAMPLE_RATE)
        out[at : at + len(src)] = src[: len(out) - at]
    return out


def first_speech(audio: Audio, regions: Sequence[SpeechRegion], seconds: float) -> np.ndarray:
    """Up to ``seconds`` of a recording's speech, regions concatenated (for language detection)."""
    parts, total = [], 0
    limit = int(seconds * SAMPLE_RATE)
    for r in regions or [SpeechRegion(0.0, audio.duration)]:
        part = audio.samples[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)][: limit - total]
        parts.append(part)
        total += len(part)
        if total >= limit:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def assemble(
    audio: Audio, segments: list[Segment], regions: Sequence[SpeechRegion], language: tuple[str, float],
    model: str, options: TranscribeOptions,
) -> Transcript:
    """One recording's transcript: segments in time order, renumbered, with summary figures."""
    segments.sort(key=lambda s: (s.start, s.end))
    words = [w for s in segments for w in s.words]
    for i, s in enumerate(segments):
        s.id = i
        if not options.word_timestamps:
            s.words = []
    return Transcript(
        source=audio.source,
        duration=round(audio.duration, 3),
        language=language[0],
        language_probability=round(language[1], 4),
        segments=segments,
        model=model,
        speech_duration=round(speech_duration(list(regions)), 3),
        confidence=confidence(segments, words),
        options=options,
    )


def confidence(segments: Sequence[Segment], words: Sequence) -> float:
    """Mean word probability; without word timings, the mean per-token probability of segments."""
    if words:
        return round(float(np.mean([w.probability for w in words])), 4)
    if segments:
        return round(float(np.mean([math.exp(s.avg_logprob) for s in segments])), 4)
    return 0.0
