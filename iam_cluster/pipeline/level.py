"""Level normalisation: one gain per recording that brings its speech to a common loudness.

Far-field meeting audio often sits 20-30 dB below a close-talk recording. Silero VAD misses much
of such quiet speech, and Whisper, whose log-mel input is not level-invariant, judges it silent
more often; and when quiet and loud recordings share a packed window, the quiet one is the one
that gets skipped. The VAD and the ASR windows therefore see every recording at the same level.

The level is measured as ITU-R BS.1770 measures loudness, without its frequency weighting: mean
power over 20-ms frames that pass a first gate, then over those within 10 dB of that mean (a
relative gate), so long silences and the speech fraction do not move it. BS.1770's first gate is
absolute (-70 dBFS); ours sits a fixed distance below the recording's loud frames, so that a
recording and a quieter copy of it pass the same frames and come out at the same level: with the
absolute gate, the AMI excerpts scaled to peaks at -35 dBFS came out up to 2.7 dB off their
originals (trn01; dev00 0.18 dB, which changed six of its 60 words on an Intel host), against at
most 0.02 dB now (``tests/unit/test_level.py``).
"""

from __future__ import annotations

import numpy as np

from iam_cluster.pipeline.types import to_float

#: Speech level every recording is brought to (dBFS, gated mean power).
TARGET_DBFS = -20.0
#: A recording whose loud frames (``LOUD_QUANTILE`` of frame power) are quieter than this holds
#: no speech to bring up (hiss, hum) and is left alone.
ABSOLUTE_GATE_DBFS = -70.0
#: Frames more than this below the loud frames never count as speech when measuring the level
#: (scale-free: the same frames pass in any copy of the recording, at any level).
LOUD_GATE_DB = 60.0
LOUD_QUANTILE = 0.99
#: Digital silence never counts (far below 16-bit PCM's last bit, so that a quiet float copy of a
#: recording keeps the frames the original's gate passes).
SILENCE_DBFS = -140.0
RELATIVE_GATE_DB = 10.0
#: The most a recording is amplified. 40 dB brings speech at -60 dBFS to the target: a far-field
#: AMI excerpt whose peaks sit at -35 dBFS has its speech at -52 dBFS, and with a 30-dB cap it
#: was decoded 1.7 dB quieter than the same excerpt at its own level, and 15 % of its words
#: changed (now one word in 64). Hiss and hum alone at -55 to -75 dBFS, so amplified, still
#: give no words (the VAD and the ASR's silence guards), and digital silence is left alone.
MAX_GAIN_DB = 40.0
#: After the gain, 99.9% of 20-ms frame peaks stay at or below this (no hard clipping of speech).
PEAK_CEILING = 0.99
_FRAME = 320  # 20 ms at 16 kHz
#: Frames measured at a time: hours of audio never become one float64 copy.
_BLOCK_FRAMES = 30_000  # 10 minutes


def _frame_power_and_peak(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean power and peak of each whole 20-ms frame (samples float32 or 16-bit PCM)."""
    n = len(samples) // _FRAME
    power, peak = np.empty(n), np.empty(n, np.float32)
    for i in range(0, n, _BLOCK_FRAMES):
        j = min(n, i + _BLOCK_FRAMES)
        frames = to_float(samples[i * _FRAME : j * _FRAME]).reshape(-1, _FRAME)
        power[i:j] = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / _FRAME
        peak[i:j] = np.abs(frames).max(axis=1)
    return power, peak


def speech_level(samples: np.ndarray) -> float | None:
    """Gated mean power of ``samples`` in dBFS, or None when nothing passes the absolute gate."""
    return _level(_frame_power_and_peak(samples)[0])


def _level(power: np.ndarray) -> float | None:
    if len(power) == 0:
        return None
    loud = float(np.quantile(power, LOUD_QUANTILE))
    if loud <= 10 ** (SILENCE_DBFS / 10):  # mostly digital silence: the loudest frame
        loud = float(power.max())
    if loud <= 10 ** (ABSOLUTE_GATE_DBFS / 10):
        return None
    power = power[power > max(loud * 10 ** (-LOUD_GATE_DB / 10), 10 ** (SILENCE_DBFS / 10))]
    power = power[power > power.mean() * 10 ** (-RELATIVE_GATE_DB / 10)]
    return float(10 * np.log10(power.mean()))


def gain(samples: np.ndarray) -> float:
    """The linear gain that brings ``samples``' speech level to TARGET_DBFS (1.0 for silence).

    Attenuation is not limited; amplification is, by MAX_GAIN_DB and by the peaks.
    """
    return gain_and_power(samples)[0]


def gain_and_power(samples: np.ndarray) -> tuple[float, np.ndarray]:
    """``gain(samples)`` and the mean power of each whole 20-ms frame before the gain."""
    power, peaks = _frame_power_and_peak(samples)
    return _gain(power, peaks), power


def _gain(power: np.ndarray, peaks: np.ndarray) -> float:
    level = _level(power)
    if level is None:
        return 1.0
    g = 10 ** (min(TARGET_DBFS - level, MAX_GAIN_DB) / 20)
    peak = float(np.quantile(peaks, 0.999))
    if peak > 0 and g * peak > PEAK_CEILING:
        g = max(min(g, PEAK_CEILING / peak), min(1.0, g))
    return float(g)


def normalised(samples: np.ndarray, g: float | None = None) -> np.ndarray:
    """``samples`` (float32 or 16-bit PCM) times their gain, as float32; the input is left alone."""
    g = gain(samples) if g is None else g
    floats = to_float(samples)
    return floats if g == 1.0 else (floats * np.float32(g)).astype(np.float32, copy=False)
