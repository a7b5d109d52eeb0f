"""The engine: VAD → pack windows → batched ASR → transcripts per recording (``Pipeline``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from iam_cluster.pipeline.asr import SpeechRecognizer
from iam_cluster.pipeline.chunk import split_long
from iam_cluster.pipeline.types import (
    SAMPLE_RATE,
    Audio,
    ProgressHook,
    Segment,
    SpeechRegion,
    TranscribeOptions,
    Transcript,
    no_progress,
)
from iam_cluster.pipeline.stats import Stats
from iam_cluster.pipeline.vad import SileroVad, VoiceActivityDetector, speech_duration
from iam_cluster.pipeline.windows import WindowDecoder, window_limit


class Pipeline:
    """The transcription engine over decoded recordings; every runner (in process, Serve, Ray Data)
    drives it, so the same audio and options give the same words on every path.

    Args:
        asr: the speech recognizer (a loaded ``WhisperASR``, or a remote one on the Serve cluster).
        batch_size: windows handed to ``asr.decode`` per call.
        vad: the voice activity detector (Silero by default).
        stats: where stage times and counts of the expensive paths accumulate (pass the model's
            own to see both).
    """

    def __init__(self, asr: SpeechRecognizer, batch_size: int, vad: VoiceActivityDetector | None = None,
                 stats: Stats | None = None) -> None:
        self.asr = asr
        self.batch_size = batch_size
        self.vad = vad or SileroVad()
        self.stats = stats or Stats()

    def speech(self, audio: Audio, options: TranscribeOptions) -> list[SpeechRegion]:
        """The VAD stage for one recording."""
        with self.stats.time("vad"):
            return find_speech(audio, options, self.vad)

    def transcribe_regions(
        self, recordings: Sequence[Audio], regions: Sequence[Sequence[SpeechRegion]],
        options: TranscribeOptions, hook: ProgressHook = no_progress,
        languages: Sequence[tuple[str, float]] | None = None, files: Sequence[int] | None = None,
    ) -> list[Transcript]:
        """ASR over recordings whose speech regions are known; their windows share batches.

        Args:
            languages: ``(code, probability)`` per recording when already known (the shards of one
                recording share its language); detected here otherwise.
            files: per recording, the file it is a shard of (default: each its own file).

        Returns:
            One transcript per recording, in order.
        """
        options.check_model(self.asr.name, self.asr.is_multilingual)
        if languages is None:
            languages = self.languages(recordings, regions, options)
        segments = WindowDecoder(self.asr, recordings, languages, options, self.batch_size, self.stats,
                                 hook, files).run(regions)
        return [
            assemble(audio, segs, regs, lang, self.asr.name, options)
            for audio, segs, regs, lang in zip(recordings, segments, regions, languages)
        ]

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


def first_speech(audio: Audio, regions: Sequence[SpeechRegion], seconds: float) -> np.ndarray:
    """Up to ``seconds`` of a recording's speech, regions concatenated (for language detection)."""
    parts, total = [], 0
    limit = int(seconds * SAMPLE_RATE)
    for r in regions or [SpeechRegion(0.0, audio.duration)]:
        part = audio.span(r.start, r.end)[: limit - total]
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
    segments = untangle(segments)
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


def untangle(segments: list[Segment]) -> list[Segment]:
    """Segments (sorted by start) whose words run forward in time, none starting before the one
    before it ends.

    Passes decode different layouts of the same audio, and where they disagree about where speech
    lies, their words can cross: on German speech tiny.en wrote "In that I hate, ..." over 7 s in
    one pass and "He didn't!" twice inside that span in later ones, and word times ran backwards.
    A segment starting before the last word of the one before it is merged into it (its words in
    time order); a word overlapping the next one ends where that one starts (a word's start is
    what alignment gets right; its end is what it stretches over the pause after it). Segments
    without words are left as they are.
    """
    out: list[Segment] = []
    for seg in segments:
        prev = out[-1] if out else None
        if prev is not None and prev.words and seg.words and seg.words[0].start < prev.words[-1].start:
            words = sorted([*prev.words, *seg.words], key=lambda w: (w.start, w.end))
            n_prev, n_seg = len(prev.words), len(seg.words)
            out[-1] = msgspec.structs.replace(
                prev, text="".join(w.word for w in words), words=words,
                avg_logprob=round((prev.avg_logprob * n_prev + seg.avg_logprob * n_seg) / (n_prev + n_seg), 4),
                no_speech_prob=min(prev.no_speech_prob, seg.no_speech_prob))
        else:
            out.append(seg)
    last = None
    for seg in out:
        for w in seg.words:
            if last is not None:
                w.start = max(w.start, last.start)  # (a segment's own words never run backwards)
                w.end = max(w.end, w.start)
                last.end = min(last.end, w.start)
            last = w
    for seg in out:
        if seg.words:
            seg.start, seg.end = seg.words[0].start, seg.words[-1].end
    return out


def confidence(segments: Sequence[Segment], words: Sequence) -> float:
    """Mean word probability; without word timings, the mean per-token probability of segments."""
    if words:
        return round(float(np.mean([w.probability for w in words])), 4)
    if segments:
        return round(float(np.mean([math.exp(s.avg_logprob) for s in segments])), 4)
    return 0.0
