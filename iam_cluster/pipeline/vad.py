"""Voice activity detection: speech regions with the Silero VAD model that faster-whisper ships."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from iam_cluster.pipeline.level import TARGET_DBFS, gain_and_power, normalised
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, VadOptions, to_float

#: Long recordings are scanned in parts of about this length, cut at quiet points, so several
#: cores can share the work (Silero runs on one). The parts depend on the length only, never on
#: the number of threads, so every path finds the same speech in the same recording.
PART_SECONDS = 60.0
#: A part boundary is moved to the quietest 100 ms within this many seconds of the even split.
_CUT_SEARCH_SECONDS = 5.0
#: Stretches of at least ``GATE_SECONDS`` whose every 20-ms frame lies ``GATE_DB`` or more below
#: the common speech level (after the recording's gain, see ``level``) are not scanned, but for
#: ``GATE_MARGIN`` at each edge (Silero's padding of a region that ends there, and its state
#: settling before one that starts). Silero finds no speech in them: hiss, hum and room tone
#: between turns, the long silences of a recorded meeting. Chosen by ``benchmarks/vad_gate.py``.
GATE_DB = 35.0
GATE_SECONDS = 5.0
GATE_MARGIN = 2.0
_FRAME_SECONDS = 0.02  # the frames ``level`` measures
_SILERO_FRAME = 512  # samples per Silero step at 16 kHz: a scan resumes on the grid of its part


class VoiceActivityDetector(Protocol):
    """Finds speech in a recording; regions are sorted, disjoint and at most ``max_region`` long."""

    def __call__(self, audio: Audio, options: VadOptions, max_region: float) -> list[SpeechRegion]: ...


class SileroVad:
    """faster-whisper's Silero VAD (ONNX, one thread per call), with its region padding and
    max-length splitting; a long recording is cut at quiet points and its parts scanned at once.
    The recording is scanned at a common speech level (``level.normalised``): Silero misses much
    of quiet far-field speech at its own level. Long quiet stretches are not scanned (``GATE_DB``).

    Args:
        workers: parts scanned concurrently (default: the machine's cores, at most 4); the
            result does not depend on it.
        gate: leave out the quiet stretches (off: scan every sample, as faster-whisper does).
    """

    def __init__(self, workers: int | None = None, gate: bool = True) -> None:
        self.workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
        self.gate = gate

    def __call__(self, audio: Audio, options: VadOptions, max_region: float) -> list[SpeechRegion]:
        samples = audio.samples
        if len(samples) == 0:
            return []
        g, power = gain_and_power(samples)  # each part is scaled as it is scanned: no float copy of the whole
        parts = int(len(samples) // (PART_SECONDS * SAMPLE_RATE))
        cuts = quiet_cuts(samples, parts) if parts >= 2 else []
        bounds = [
            span for a, b in zip([0, *cuts], [*cuts, len(samples)])
            for span in (_audible(power, g, a, b) if self.gate else [(a, b)])
        ]
        if not bounds:
            return []
        if len(bounds) == 1:
            a, b = bounds[0]
            return _scan(normalised(samples[a:b], g), a, options, max_region)
        with ThreadPoolExecutor(min(self.workers, len(bounds))) as pool:  # onnxruntime releases the GIL
            found = pool.map(lambda b: _scan(normalised(samples[b[0] : b[1]], g), b[0], options, max_region),
                             bounds)
        return _join([r for part in found for r in part], [c / SAMPLE_RATE for c in cuts], max_region)


def _audible(power: np.ndarray, g: float, a: int, b: int) -> list[tuple[int, int]]:
    """The sample ranges of ``[a, b)`` left to scan once its quiet stretches (``GATE_DB``,
    ``GATE_SECONDS``, ``GATE_MARGIN``) are taken out; ``power``: the recording's 20-ms frame
    power before its gain ``g``. Empty when the whole range is quiet."""
    frame = int(_FRAME_SECONDS * SAMPLE_RATE)
    first, last = -(-a // frame), b // frame  # the whole frames inside [a, b)
    if last - first < GATE_SECONDS / _FRAME_SECONDS:
        return [(a, b)]
    quiet = power[first:last] * g * g < 10 ** ((TARGET_DBFS - GATE_DB) / 10)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    margin = int(round(GATE_MARGIN / _FRAME_SECONDS))
    spans, at = [], a
    for qa, qb in zip(edges[::2], edges[1::2]):  # runs of quiet frames
        if (qb - qa) * _FRAME_SECONDS < GATE_SECONDS:
            continue
        start = int(first + qa + margin) * frame if qa > 0 else a  # no margin at the range's edges
        # the scan resumes on its range's grid of Silero steps, where the unskipped scan's steps fall
        end = a + (int(first + qb - margin) * frame - a) // _SILERO_FRAME * _SILERO_FRAME if qb < len(quiet) else b
        if end <= start:
            continue
        if start > at:
            spans.append((at, start))
        at = end
    if at < b:
        spans.append((at, b))
    return spans


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
