"""Run the stages in order: decode → VAD → pack windows → batched ASR → transcripts per recording."""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from iam_cluster.errors import MediaError
from iam_cluster.pipeline.asr import WhisperASR
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.diarize import Diarizer, make_diarizer
from iam_cluster.pipeline.merge import merge
from iam_cluster.pipeline.types import (
    SAMPLE_RATE,
    Audio,
    Diarization,
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

#: Recordings are transcribed together in groups of about this many windows, which bounds memory
#: when a folder holds hours of audio while still letting short files share batches.
GROUP_WINDOWS = 64

class Pipeline:
    """The in-process transcription engine; the Ray Serve deployments and the worker reuse it.

    Args:
        asr: a loaded model (built from the settings' model when omitted).
        vad: the voice activity detector (Silero by default).
        diarizer: used when options ask for speakers (the settings' backend by default).
        stats: where stage times and counts accumulate.
    """

    def __init__(
        self, asr: WhisperASR | None = None, vad: VoiceActivityDetector | None = None,
        diarizer: Diarizer | None = None, stats: Stats | None = None,
    ) -> None:
        if asr is None:
            from iam_cluster.settings import get_settings

            m = get_settings().models
            asr = WhisperASR(m.name, m.device, m.compute_type, m.cpu_threads, cache_dir=m.cache_dir,
                             allow_download=m.allow_download)
        self.asr = asr
        self.vad = vad or SileroVad()
        self._diarizer = diarizer
        #: Seconds per stage and counts of the expensive paths (pass the model's to see both).
        self.stats = stats or Stats()

    @property
    def diarizer(self) -> Diarizer:
        """The diarizer, built on first use from the settings unless one was given."""
        if self._diarizer is None:
            from iam_cluster.settings import get_settings

            d = get_settings().diarization
            self._diarizer = make_diarizer(d.backend, **d.diarizer_kwargs())
        return self._diarizer

    # -- public API -------------------------------------------------------------------------

    def transcribe(
        self, source: str | os.PathLike | bytes | Audio, options: TranscribeOptions | None = None,
        hook: ProgressHook = no_progress,
    ) -> Transcript:
        """Transcribe one recording (a path, raw bytes or decoded Audio)."""
        if not isinstance(source, Audio):
            with self.stats.time("decode"):
                source = decode_audio(source)
        audio = source
        return self.transcribe_many([audio], options, hook)[0]

    def transcribe_many(
        self, recordings: Sequence[Audio], options: TranscribeOptions | None = None,
        hook: ProgressHook = no_progress,
    ) -> list[Transcript]:
        """Transcribe several decoded recordings together: their windows share ASR batches.

        Returns:
            One transcript per recording, in order.
        """
        options = options or TranscribeOptions()
        regions = [self.speech(a, options) for a in recordings]
        return self.transcribe_regions(recordings, regions, options, hook)

    def speech(self, audio: Audio, options: TranscribeOptions) -> list[SpeechRegion]:
        """The VAD stage for one recording."""
        with self.stats.time("vad"):
            return self.vad(audio, options.vad, max_region=window_limit(options))

    def transcribe_regions(
        self, recordings: Sequence[Audio], regions: Sequence[Sequence[SpeechRegion]],
        options: TranscribeOptions, hook: ProgressHook = no_progress,
    ) -> list[Transcript]:
        """ASR over recordings whose speech regions are already known (the VAD ran elsewhere)."""
        languages = self._languages(recordings, regions, options)
        segments = WindowDecoder(self.asr, recordings, languages, options, self.stats, hook).run(regions)
        transcripts = [
            assemble(audio, segs, regs, lang, self.asr.name, options)
            for audio, segs, regs, lang in zip(recordings, segments, regions, languages)
        ]
        if options.diarize:
            transcripts = [
                merge(t, self.diarize(audio, regs, options, hook))
                for t, audio, regs in zip(transcripts, recordings, regions)
            ]
        return transcripts

    def diarize(
        self, audio: Audio, regions: Sequence[SpeechRegion], options: TranscribeOptions,
        hook: ProgressHook = no_progress,
    ) -> Diarization:
        """The diarization stage for one recording, with the options' speaker counts."""
        return self.diarizer(
            audio, regions, num_speakers=options.num_speakers, min_speakers=options.min_speakers,
            max_speakers=options.max_speakers, hook=hook,
        )

    def transcribe_paths(
        self, paths: Iterable[str | os.PathLike], options: TranscribeOptions | None = None,
        hook: ProgressHook = no_progress, max_duration: float | None = None,
    ) -> Iterator[tuple[Path, Transcript | MediaError]]:
        """Transcribe many files, yielding ``(path, transcript or error)`` as groups finish.

        Files are decoded and VAD-scanned in a background thread while the model works, and
        grouped so that short files share windows and batches. A file that cannot be decoded
        yields its MediaError and does not stop the others.
        """
        options = options or TranscribeOptions()
        if max_duration is None:
            from iam_cluster.settings import get_settings

            max_duration = get_settings().audio.max_duration_s
        paths = [Path(p) for p in paths]
        loaded: queue.Queue = queue.Queue(maxsize=256)

        def load() -> None:
            for path in paths:
                try:
                    with self.stats.time("decode"):
                        audio = decode_audio(path, max_duration=max_duration)
                    loaded.put((path, audio, self.speech(audio, options)))
                except MediaError as exc:
                    loaded.put((path, exc, None))
                except Exception as exc:  # keep going; the consumer reports it as this file's failure
                    loaded.put((path, MediaError(str(path), f"could not be read: {exc}"), None))
            loaded.put(None)

        threading.Thread(target=load, name="iam-decode", daemon=True).start()
        group: list[tuple[Path, Audio, list[SpeechRegion]]] = []
        windows = 0.0
        finished = 0
        while True:
            item = loaded.get()
            if item is not None and item[2] is None:
                finished += 1
                hook("files", finished, len(paths))
                yield item[0], item[1]
                continue
            if item is not None:
                group.append(item)
                windows += max(1.0, speech_duration(item[2]) / options.chunk_length)
            if group and (item is None or windows >= GROUP_WINDOWS):
                results = self.transcribe_regions([g[1] for g in group], [g[2] for g in group], options, hook)
                for (path, _, _), transcript in zip(group, results):
                    finished += 1
                    hook("files", finished, len(paths))
                    yield path, transcript
                group, windows = [], 0.0
            if item is None:
                return

    # -- helpers ----------------------------------------------------------------------------

    def _languages(self, recordings, regions, options) -> list[tuple[str, float]]:
        """The language of each recording: given, English-only model, or detected on its speech."""
        if options.language or not self.asr.is_multilingual:
            return [(options.language or "en", 1.0)] * len(recordings)
        probe = [first_speech(a, r, 30.0) for a, r in zip(recordings, regions)]
        found: list[tuple[str, float]] = []
        for i in range(0, len(probe), options.batch_size):
            found.extend(self.asr.detect_languages(probe[i : i + options.batch_size]))
        return found


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
    )


def confidence(segments: Sequence[Segment], words: Sequence) -> float:
    """Mean word probability; without word timings, the mean per-token probability of segments."""
    if words:
        return round(float(np.mean([w.probability for w in words])), 4)
    if segments:
        return round(float(np.mean([math.exp(s.avg_logprob) for s in segments])), 4)
    return 0.0
