"""Level normalisation: speech to a common level, silence and hiss left quiet."""

from __future__ import annotations

import numpy as np

from iam_cluster.pipeline.level import MAX_GAIN_DB, TARGET_DBFS, gain, normalised, speech_level

SR = 16_000


def talk(seconds: float, dbfs: float, pause: float = 0.0) -> np.ndarray:
    """Noise bursts at ``dbfs`` (half a second on, a quarter off), then ``pause`` s of silence."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(seconds * SR)).astype(np.float32)
    x[(np.arange(len(x)) % int(0.75 * SR)) >= int(0.5 * SR)] = 0
    x *= 10 ** (dbfs / 20) / np.sqrt(np.mean(x[x != 0] ** 2))
    return np.concatenate([x, np.zeros(int(pause * SR), np.float32)])


def test_quiet_speech_is_brought_to_the_target_whatever_the_pauses():
    for pause in (0.0, 60.0):
        x = talk(10, -45.0, pause)
        assert abs(speech_level(normalised(x)) - TARGET_DBFS) < 0.5


def test_loud_speech_is_turned_down_and_silence_left_alone():
    assert abs(speech_level(normalised(talk(5, -6.0))) - TARGET_DBFS) < 0.5
    assert gain(np.zeros(SR, np.float32)) == 1.0
    assert gain(np.zeros(0, np.float32)) == 1.0


def test_gain_is_capped_and_peaks_are_kept_below_full_scale():
    hiss = talk(5, -65.0)
    assert np.isclose(20 * np.log10(gain(hiss)), MAX_GAIN_DB)
    spiky = talk(5, -40.0)
    spiky[:: SR // 2] = 0.9  # clicks far above the speech
    assert np.abs(normalised(spiky)).max() <= 1.0


def test_a_quieter_copy_comes_out_at_the_same_level():
    """The level is scale-free: a far-field excerpt and copies of it 10 and 20 dB quieter pass the
    same frames (with BS.1770's absolute gate they came out 0.2 dB apart, and the copies' words
    differed)."""
    from pathlib import Path

    from iam_cluster.pipeline.decode import decode_audio

    x = decode_audio(Path(__file__).resolve().parents[1] / "data" / "dev00.wav").samples
    level = speech_level(x)
    for db in (-10.0, -20.0):  # (its speech at -58 dBFS: under the 40-dB cap)
        copy = (x * np.float32(10 ** (db / 20))).astype(np.float32)
        assert abs(speech_level(copy) - (level + db)) < 0.01
        assert np.allclose(normalised(copy), normalised(x), atol=1e-5)
