"""Voice activity detection: speech regions with the Silero VAD model that faster-whisper ships."""

from __future__ import annotations

from typing import Protocol

from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, VadOptions


class VoiceActivityDetector(Protocol):
    """Finds speech in a recording; regions are sorted, disjoint and at most ``max_region`` long."""

    def __call__(self, audio: Audio, options: VadOptions, max_region: float) -> list[SpeechRegion]: ...


class SileroVad:
    """faster-whisper's Silero VAD (ONNX, CPU), with its region padding and max-length splitting."""

    def __call__(self, audio: Audio, options: VadOptions, max_region: float) -> list[SpeechRegion]:
        from faster_whisper.vad import VadOptions as FwVadOptions
        from faster_whisper.vad import get_speech_timestamps

        if len(audio.samples) == 0:
            return []
        stamps = get_speech_timestamps(
            audio.samples,
            FwVadOptions(
                threshold=options.threshold,
                min_speech_duration_ms=options.min_speech_duration_ms,
                min_silence_duration_ms=options.min_silence_duration_ms,
                speech_pad_ms=options.speech_pad_ms,
                max_speech_duration_s=max_region,
            ),
            sampling_rate=SAMPLE_RATE,
        )
        return [SpeechRegion(start=s["start"] / SAMPLE_RATE, end=s["end"] / SAMPLE_RATE) for s in stamps]


def speech_duration(regions: list[SpeechRegion]) -> float:
    """Total seconds of speech in ``regions``."""
    return sum(r.duration for r in regions)
