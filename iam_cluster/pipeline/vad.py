"""Voice activity detection: speech regions with the Silero VAD model that faster-whisper ships."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from iam_cluster.pipeline.level import gain, normalised
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, VadOptions, to_float

#: Long recordings are scanned in parts of about this length, cut at quiet points, so several
#: cores can share the work (Silero runs on one). The parts depend on the length only, never on
#: the number of threads, so every path finds the same speech in the same recording.
PART_SECONDS = 60.0
#: A part boundary is moved to the quietest 100 ms within this many seconds of the even split.
_CUT_SEARCH_SECONDS = 5.0


class VoiceActivityDetector(Protocol):
    """Finds speech in a recording; regions are sorted, disjoint and at most ``max_region`` long."""

    def __call__(self, audio: Audio, options: VadOptions, max_region: float) -> list[SpeechRegion]: ...


class SileroVad:
    """faster-whisper's Silero VAD (ONNX, one thread per call), with its region padding and
    max-length splitting; a long recording is cut at quiet points and its parts scanned at once.
    The recording is scanned at a common speech level (``level.normalised``): Silero misses much
    of quiet far-field speech at its own level.

    Args:
        workers: parts scanned concurrently (default: the machine's cores, at most 4); the
            result does not depend on it.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))

    def __call__(self, audio: Audio, options: VadOptions, max_region: float) -> list[SpeechRegion]:
        samples = audio.samples
        if len(samples) == 0:
            return []
        g = gain(samples)  # each part is scaled as it is scanned: no float copy of the whole recording
        parts = int(len(samples) // (PART_SECONDS * SAMPLE_RATE))
        if parts < 2:
            return _scan(normalised(samples, g), 0, options, max_region)
        cuts = quiet_cuts(samples, parts)
        bounds = list(zip([0, *cuts], [*cuts, len(samples)]))
        with ThreadPoolExecutor(min(self.workers, len(bounds))) as pool:  # onnxruntime releases the GIL
            parts = pool.map(lambda b: _scan(normalised(samples[b[0] : b[1]], g), b[0], options, max_region),
                             bounds)
        return _join([r for part in parts for r in part], [c / SAMPLE_RATE for c in cuts], max_region)


def _scan(samples: np.ndarray, start: int, options: VadOptions, max_region: float) -> list[SpeechRegion]:
    from faster_whisper.vad import VadOptions as FwVadOptions
    from faster_whisper.vad import get_speech_timestamps

    stamps = get_speech_timestamps(
        samples,
        FwVadOptions(
            threshold=options.threshold,
            neg_threshold=options.neg_threshold,
            min_speech_duration_ms=options.min_speech_duration_ms,
            min_silence_duration_ms=options.min_silence_duration_ms,
            speech_pad_ms=options.speech_pad_ms,
            max_speech_duration_s=max_region,
        ),
        sampling_rate=SAMPLE_RATE,
    )
    return [SpeechRegion((start + s["start"]) / SAMPLE_RATE, (start + s["end"]) / SAMPLE_RATE) for s in stamps]


def quiet_cuts(samples: np.ndarray, parts: int) -> list[int]:
    """Sample indices splitting ``samples`` into ``parts``, each moved to a nearby quiet spot."""
    frame = SAMPLE_RATE // 10
    cuts = []
    for i in range(1, parts):
        ideal = len(samples) * i // parts
        lo = max(0, ideal - int(_CUT_SEARCH_SECONDS * SAMPLE_RATE))
        hi = min(len(samples), ideal + int(_CUT_SEARCH_SECONDS * SAMPLE_RATE))
        window = to_float(samples[lo : hi - (hi - lo) % frame]).reshape(-1, frame)
        cuts.append(lo + int(np.argmin((window**2).mean(axis=1))) * frame + frame // 2)
    return cuts


def _join(regions: list[SpeechRegion], cuts: list[float], max_region: float) -> list[SpeechRegion]:
    """Rejoin a region the cuts split in two (when the result still fits ``max_region``)."""
    out: list[SpeechRegion] = []
    for r in regions:
        if out and any(abs(out[-1].end - c) < 0.05 and abs(r.start - c) < 0.05 for c in cuts) and (
            r.end - out[-1].start <= max_region
        ):
            out[-1] = SpeechRegion(out[-1].start, r.end)
        else:
            out.append(r)
    return out


def speech_duration(regions: list[SpeechRegion]) -> float:
    """Total seconds of speech in ``regions``."""
    return sum(r.duration for r in regions)
