"""decode_audio and probe on real speech re-encoded to every container, and on broken inputs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest

from iam_cluster.errors import MediaError
from iam_cluster.pipeline.decode import MediaInfo, decode_audio, probe
from iam_cluster.pipeline.types import SAMPLE_RATE

DATA = Path(__file__).parents[1] / "data"
JFK = DATA / "jfk.flac"
JFK_SECONDS = 11.0
VIDEO_CODEC = next(c for c in ("libx264", "mpeg4") if c in av.codecs_available)

#: file name -> (muxer, audio encoder, rate, muxer options, add a video stream)
FORMATS = {
    "jfk.mp3": ("mp3", "libmp3lame", 44100, {}, False),
    "jfk.ogg": ("ogg", "libopus", 48000, {}, False),
    "jfk.m4a": ("ipod", "aac", 44100, {}, False),
    "jfk-faststart.m4a": ("ipod", "aac", 44100, {"movflags": "faststart"}, False),
    "jfk.webm": ("webm", "libopus", 48000, {}, False),
    "jfk-video.mp4": ("mp4", "aac", 44100, {}, True),
    "jfk.wav": ("wav", "pcm_s16le", 44100, {}, False),
    "jfk.flac": ("flac", "flac", 44100, {}, False),
    # A live stream (as browsers' MediaRecorder writes) declares no duration at all.
    "jfk-live.webm": ("webm", "libopus", 48000, {"live": "1"}, False),
}


def _add_video(out: av.container.OutputContainer, frames: int = 3) -> None:
    video = out.add_stream(VIDEO_CODEC, rate=1)
    video.width = video.height = 32
    video.pix_fmt = "yuv420p"
    black = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
    for i in range(frames):
        frame = black.reformat(format="yuv420p")
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
    for packet in video.encode(None):
        out.mux(packet)


def _encode(dst: Path, muxer: str, codec: str, rate: int, options: dict, video: bool) -> Path:
    with av.open(str(JFK)) as src, av.open(str(dst), "w", format=muxer, options=options) as out:
        audio = out.add_stream(codec, rate=rate, layout="stereo")
        if video:
            _add_video(out)
        for frame in src.decode(audio=0):
            frame.pts = None  # let the encoder number the samples
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jfk.flac re-encoded to each container, plus a video-only mp4."""
    root = tmp_path_factory.mktemp("media")
    files = {name: _encode(root / name, *spec) for name, spec in FORMATS.items()}
    with av.open(str(root / "video-only.mp4"), "w", format="mp4") as out:
        _add_video(out)
    files["video-only.mp4"] = root / "video-only.mp4"
    return files


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return decode_audio(JFK).samples


def _envelope(samples: np.ndarray, hop: int = SAMPLE_RATE // 100) -> np.ndarray:
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    return np.sqrt((frames**2).mean(axis=1))


def _similarity(a: np.ndarray, b: np.ndarray, max_lag: int = 10) -> float:
    """Best correlation of two 10 ms loudness contours within ±100 ms (AAC adds a lead-in)."""
    a, b = _envelope(a), _envelope(b)
    n = min(len(a), len(b)) - 2 * max_lag
    core = b[max_lag : max_lag + n]
    return max(np.corrcoef(a[lag : lag + n], core)[0, 1] for lag in range(2 * max_lag + 1))


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2)))


def _half(path: Path, dst: Path) -> Path:
    data = path.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00" * 6 + b"\x00" + b"\x00" * 6)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _error(source, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as info:
        decode_audio(source, **kwargs)
    return info.value


@pytest.mark.parametrize("name", [n for n in FORMATS if n != "jfk-live.webm"])
def test_every_format_decodes_to_16k_mono_float32(media, reference, name):
    audio = decode_audio(media[name])

    assert audio.source == str(media[name])
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration - JFK_SECONDS) < 0.1
    assert _rms(audio.samples) > 0.05
    # Same speech as the lossless decode: loudness within 10 %, loudness contour alike.
    assert _rms(audio.samples) == pytest.approx(_rms(reference), rel=0.1)
    assert _similarity(audio.samples, reference) > 0.95


@pytest.mark.parametrize(
    ("clip", "seconds"), [("jfk.flac", 11.0), ("multilingual.mp3", 59.9), ("spk1_snt1.wav", 2.87)]
)
def test_real_clips(clip, seconds):
    audio = decode_audio(DATA / clip)
    assert audio.duration == pytest.approx(seconds, abs=0.05)
    assert np.abs(audio.samples).max() <= 1.0


def test_bytes_and_file_objects():
    data = JFK.read_bytes()
    assert decode_audio(data).source == "<bytes>"
    assert decode_audio(io.BytesIO(data)).source == "<stream>"
    assert decode_audio(data, name="upload.flac").source == "upload.flac"

    class Pipe(io.RawIOBase):  # not seekable, like a socket or stdin
        def __init__(self, payload: bytes) -> None:
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            return self._inner.readinto(buffer)

    assert decode_audio(Pipe(data)).duration == pytest.approx(JFK_SECONDS, abs=0.01)
    offset = io.BytesIO(b"junk" + data)
    offset.read(4)  # a file object is read from where it stands
    assert decode_audio(offset).duration == pytest.approx(JFK_SECONDS, abs=0.01)


def test_mp3_switching_sample_rate_mid_stream(media):
    """Two MP3s joined with ``cat`` (44.1 kHz stereo, then 24 kHz mono) decode whole."""
    joined = media["jfk.mp3"].read_bytes() + (DATA / "multilingual.mp3").read_bytes()
    assert decode_audio(joined).duration == pytest.approx(JFK_SECONDS + 59.9, abs=0.2)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


NOT_MEDIA = "not an audio or video file"
CUT = "header declares"
#: case -> (make the input from (tmp dir, media), expected code, words in the reason)
BAD_INPUTS = {
    "missing": (lambda d, m: d / "missing.wav", "unsupported_media", "file not found"),
    "directory": (lambda d, m: d, "unsupported_media", "directory"),
    "empty": (lambda d, m: _write(d / "empty.wav", b""), "empty_media", "empty"),
    "text": (lambda d, m: _write(d / "notes.wav", b"notes\n" * 50), "unsupported_media", NOT_MEDIA),
    "random": (
        lambda d, m: _write(d / "noise.mp3", np.random.default_rng(0).bytes(20_000)),
        "unsupported_media",
        NOT_MEDIA,
    ),
    "png": (lambda d, m: _write(d / "picture.png", _png()), "unsupported_media", NOT_MEDIA),
    "video-only": (lambda d, m: m["video-only.mp4"], "unsupported_media", "no audio stream"),
    "half-wav": (lambda d, m: _half(m["jfk.wav"], d / "half.wav"), "truncated_media", CUT),
    "wav-header-only": (
        lambda d, m: _write(d / "header.wav", (DATA / "spk1_snt1.wav").read_bytes()[:44]),
        "truncated_media",
        CUT,
    ),
    "half-mp3": (lambda d, m: _half(m["jfk.mp3"], d / "half.mp3"), "truncated_media", CUT),
    "half-real-mp3": (
        lambda d, m: _half(DATA / "multilingual.mp3", d / "ml.mp3"), "truncated_media", CUT
    ),
    "half-flac": (lambda d, m: _half(m["jfk.flac"], d / "half.flac"), "truncated_media", CUT),
    "half-webm": (lambda d, m: _half(m["jfk.webm"], d / "half.webm"), "truncated_media", CUT),
    "half-m4a-faststart": (
        lambda d, m: _half(m["jfk-faststart.m4a"], d / "fs.m4a"), "truncated_media", CUT
    ),
    # A plain m4a keeps its index (moov) at the end: half of one cannot even be opened.
    "half-m4a": (
        lambda d, m: _half(m["jfk.m4a"], d / "half.m4a"), "truncated_media", "damaged or truncated"
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs(tmp_path, media, case):
    make, code, reason = BAD_INPUTS[case]
    path = make(tmp_path, media)
    error = _error(path)
    assert error.code == code
    assert reason in error.reason
    assert str(path) in str(error) and error.source == str(path)


def test_ffmpeg_errors_are_wrapped_not_leaked(tmp_path):
    error = _error(_write(tmp_path / "notes.wav", b"not audio\n" * 40))
    assert isinstance(error.__cause__, av.error.FFmpegError)
    assert _error(b"", name="upload.wav").code == "empty_media"
    assert _error(io.BytesIO(b"not audio" * 40), name="upload.wav").source == "upload.wav"


def test_truncated_ogg_is_not_detectable(media, tmp_path):
    """Ogg states no length up front (FFmpeg reads the last page): half a file is just shorter."""
    audio = decode_audio(_half(media["jfk.ogg"], tmp_path / "half.ogg"))
    assert 4.0 < audio.duration < 7.0


def test_one_glitch_is_tolerated_but_corruption_is_not(media):
    data = media["jfk.mp3"].read_bytes()
    rng = np.random.default_rng(1)
    glitch = bytearray(data)
    glitch[len(data) // 2 : len(data) // 2 + 500] = rng.bytes(500)
    assert decode_audio(bytes(glitch)).duration == pytest.approx(JFK_SECONDS, abs=0.2)
    corrupt = bytearray(data)
    for start in range(len(data) // 4, len(data) * 3 // 4, 3000):
        corrupt[start : start + 300] = rng.bytes(300)
    assert _error(bytes(corrupt)).code == "truncated_media"


def test_duration_limits(media):
    error = _error(JFK, max_duration=5)
    assert error.code == "too_long" and "11.0 s" in error.reason
    # Without a declared length the limit stops the decoder itself.
    error = _error(media["jfk-live.webm"], max_duration=5)
    assert error.code == "too_long" and "more than" in error.reason
    unlimited = decode_audio(media["jfk-live.webm"], max_duration=None)
    assert unlimited.duration == pytest.approx(JFK_SECONDS, abs=0.1)
    error = _error(JFK, min_duration=20)
    assert error.code == "too_short" and str(JFK) in str(error)
    assert decode_audio(JFK, min_duration=10, max_duration=12).duration == pytest.approx(11.0)


def test_probe_reads_the_header():
    assert probe(JFK) == MediaInfo("flac", "flac", 11.0, 44100, 2)
    info = probe((DATA / "multilingual.mp3").read_bytes())
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("mp3", "mp3", 24000, 1)
    assert info.duration == pytest.approx(59.9, abs=0.1)
    assert probe(DATA / "spk1_snt1.wav").duration == pytest.approx(2.87)


def test_probe_formats(media):
    assert probe(media["jfk-video.mp4"]).codec == "aac"
    assert probe(media["jfk.webm"]).duration == pytest.approx(11.0, abs=0.1)
    assert probe(media["jfk-live.webm"]).duration is None


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda d, m: d / "missing.mp3", "unsupported_media"),
        (lambda d, m: _write(d / "empty.mp3", b""), "empty_media"),
        (lambda d, m: _write(d / "notes.mp3", b"meeting notes\n" * 50), "unsupported_media"),
        (lambda d, m: _write(d / "picture.png", _png()), "unsupported_media"),
        (lambda d, m: m["video-only.mp4"], "unsupported_media"),
    ],
    ids=["missing", "empty", "text", "png", "video-only"],
)
def test_probe_errors(tmp_path, media, make, code):
    path = make(tmp_path, media)
    with pytest.raises(MediaError) as info:
        probe(path)
    assert info.value.code == code and str(path) in str(info.value)


def test_media_error_survives_pickling():
    import pickle

    from iam_cluster.errors import MediaError

    err = pickle.loads(pickle.dumps(MediaError("a.wav", "empty file", "empty_media")))
    assert (err.source, err.reason, err.code, str(err)) == ("a.wav", "empty file", "empty_media", "a.wav: empty file")


def _pcm16_wav(samples: np.ndarray) -> bytes:
    """16-bit mono WAV bytes of int16 ``samples`` at 16 kHz."""
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def jfk_pcm() -> np.ndarray:
    return decode_audio(JFK, pcm16=True).samples.copy()


@pytest.mark.parametrize("pcm16", [False, True])
def test_a_constant_offset_is_taken_off(jfk_pcm, pcm16):
    """A recording with a DC offset (0.05 of full scale: 1638 steps) decodes to the samples of the
    same recording without one, kept as PCM or as floats."""
    from iam_cluster.pipeline.decode import remove_offset
    from iam_cluster.pipeline.types import to_float

    assert remove_offset(jfk_pcm.copy()) == 0.0  # jfk itself has none to speak of
    shifted = np.clip(jfk_pcm.astype(np.int32) + 1638, -32768, 32767).astype(np.int16)
    got = decode_audio(_pcm16_wav(shifted), pcm16=pcm16).samples
    assert abs(float(to_float(got).mean())) < 1 / 32768
    unclipped = shifted.astype(np.int32) - 1638 == jfk_pcm
    assert unclipped.mean() > 0.999
    np.testing.assert_array_equal(to_float(got)[unclipped], to_float(jfk_pcm)[unclipped])


@pytest.mark.parametrize(("scale", "steps"), [(1.0, 25), (0.1, 3)])
def test_an_offset_far_under_the_speech_leaves_the_samples_as_decoded(jfk_pcm, scale, steps):
    """An offset more than ``DC_MARGIN_DB`` under the speech (jfk with 25 steps, or jfk 20 dB down
    with 3) is left: the samples are as decoded."""
    from iam_cluster.pipeline.decode import DC_MARGIN_DB
    from iam_cluster.pipeline.level import speech_level
    from iam_cluster.pipeline.types import to_float

    shifted = (np.round(jfk_pcm * scale) + steps).astype(np.int16)
    assert speech_level(shifted) - 20 * np.log10(steps / 32768) > DC_MARGIN_DB
    got = decode_audio(_pcm16_wav(shifted)).samples
    np.testing.assert_array_equal(got, to_float(shifted))


def test_an_offset_near_the_speech_of_a_quiet_copy_is_taken_off(jfk_pcm):
    """jfk 30 dB down with an offset 5 dB under its speech: taken off."""
    from iam_cluster.pipeline.level import speech_level
    from iam_cluster.pipeline.types import to_float

    quiet = np.round(jfk_pcm * 10 ** (-30 / 20)).astype(np.int32)
    level = speech_level(quiet.astype(np.int16))
    steps = round(10 ** ((level - 5) / 20) * 32768)
    got = to_float(decode_audio(_pcm16_wav((quiet + steps).astype(np.int16)), pcm16=True).samples)
    assert abs(float(got.mean())) < 1 / 32768


def _stereo_wav(left: np.ndarray, right: np.ndarray) -> bytes:
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, np.stack([left, right], axis=1), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.mark.parametrize("pcm16", [False, True])
def test_channels_in_opposite_polarity_decode_from_the_louder_one(jfk_pcm, pcm16):
    """One signal on two channels in opposite polarity (a microphone with one leg swapped) mixes
    to near silence; such a recording decodes from its louder channel alone, sample for sample."""
    from iam_cluster.pipeline.types import to_float

    right = (-0.9 * jfk_pcm).astype(np.int16)
    mono = to_float(decode_audio(_stereo_wav(jfk_pcm, right), pcm16=pcm16).samples)
    np.testing.assert_array_equal(mono, to_float(jfk_pcm))
    # The other way round the louder channel is the right one.
    swapped = to_float(decode_audio(_stereo_wav(right, jfk_pcm), pcm16=pcm16).samples)
    np.testing.assert_array_equal(swapped, to_float(jfk_pcm))


def test_channels_that_do_not_cancel_are_mixed(jfk_pcm):
    """Two different signals (the second half of jfk under the first, one a little quieter) and a
    signal on both channels keep their mix: far more power than ``CANCEL_RATIO`` of the channels'."""
    half = len(jfk_pcm) // 2
    left, right = jfk_pcm[:half], (0.7 * jfk_pcm[half : 2 * half]).astype(np.int16)
    mixed = decode_audio(_stereo_wav(left, right)).samples
    expected = (left.astype(np.float32) + right.astype(np.float32)) / 32768 * np.float32(np.sqrt(0.5))
    assert np.abs(mixed - expected).max() < 1e-4  # FFmpeg's float downmix: (L + R) / sqrt(2)
    same = decode_audio(_stereo_wav(left, left)).samples  # (clipped where the sum passes full scale)
    assert np.abs(same - np.clip(left / 32768 * np.float32(np.sqrt(2)), -1, 1)).max() < 1e-4


def test_antiphase_mp3_decodes_from_one_channel(tmp_path, jfk_pcm):
    """The same through a lossy codec with planar float frames (MP3)."""
    from iam_cluster.pipeline.types import to_float

    path = tmp_path / "antiphase.mp3"
    signal = to_float(jfk_pcm)
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([signal, -signal], 1).reshape(1, -1), format="flt",
                                           layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
        for part in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(part):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    got = decode_audio(path).samples
    n = min(len(got), len(signal))
    assert np.sqrt(np.mean(got**2)) > 0.5 * np.sqrt(np.mean(signal**2))
    assert np.corrcoef(got[:n], signal[:n])[0, 1] > 0.9 or np.corrcoef(got[:n], -signal[:n])[0, 1] > 0.9
