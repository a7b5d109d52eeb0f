"""First pipeline stage: any audio or video file PyAV reads becomes 16 kHz mono float32 samples."""

from __future__ import annotations

import gc
import io
import itertools
import os
import time
from collections.abc import Iterator
from typing import BinaryIO

import av
import msgspec
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer

from iam_cluster.errors import MediaError
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio

Source = str | os.PathLike | bytes | BinaryIO

#: Bytes read up front to sniff magic numbers and the WAV header.
_HEAD_BYTES = 64 * 1024
#: Source samples per resampler call (faster-whisper's value): few calls, bounded memory.
_GROUP_SAMPLES = 500_000
#: Errors FFmpeg, the file system and PyAV's own checks raise; none may escape unwrapped.
#: A full collection at most this often (seconds); the young generations after every file.
_FULL_COLLECT_SECONDS = 2.0
_last_full_collect = 0.0
#: A constant offset (DC) of the samples less than this far under the recording's speech level
#: (``level.speech_level``, which counts the offset as signal) is taken off after decoding. Cheap
#: sound cards and USB microphones add one; near the speech's level the level normaliser measures
#: it as speech and leaves quiet speech quiet, and Whisper's log-mel (scaled to its loudest bin)
#: hears it in its lowest band. The eight Harvard sentences and jfk at -45 dBFS: WER 2.5 % alone,
#: 6.2 % with an offset of 0.005, 28.7 % (21 of 80 words lost) with 0.05; with the offset taken
#: off, 2.5 % at each. Further under the speech an offset adds under 1 % to its power, and the
#: samples stay as decoded (the read passage of the long-form set at 8 kHz carries one 31 dB under
#: its speech; taking it off changed a word there, by chance). Relative, so that a recording and
#: a louder or quieter copy of it are treated alike.
DC_MARGIN_DB = 20.0
#: An equal-weight mix of a recording's channels that keeps less than this share of their mean
#: power (-10 dB) cancels: the channels carry one signal in opposite polarity (a microphone wired
#: with one leg swapped, "wide" fake stereo), and the mono mix every decoder makes is near
#: silence: the Harvard sentences so recorded gave no words at all. Such a recording is decoded
#: again from its loudest channel alone. Independent channels keep half their power in the mix,
#: copies all of it.
CANCEL_RATIO = 0.1
#: Every this many source frames one is measured for ``CANCEL_RATIO`` (a few ms per minute).
_POWER_STRIDE = 8
#: Samples handled at a time while taking the offset off (bounded temporary memory on long files).
_DC_BLOCK = 1 << 20


def _collect() -> None:
    """Free the reference cycles of PyAV's resampler, whose native buffers leak unless the collector
    runs (faster-whisper issue #390). A fresh resampler's cycle is in the young generations, which
    are cheap to collect; a full collection costs with the process's heap (7 ms per file in the
    CLI, most of reading a short clip; more in a Ray worker) and runs at most every 2 s for cycles
    that aged past them."""
    global _last_full_collect
    now = time.monotonic()
    if now - _last_full_collect >= _FULL_COLLECT_SECONDS:
        _last_full_collect = now
        gc.collect()
    else:
        gc.collect(1)


_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError, ValueError)
#: Starts of files that are media even when FFmpeg cannot open them (then they are damaged).
_MEDIA_MAGIC = (b"RIFF", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3")
#: Why a path cannot be opened, in words.
_OS_ERRORS = {
    FileNotFoundError: "file not found",
    IsADirectoryError: "is a directory, not a file",
    PermissionError: "permission denied",
}
#: Containers whose header states the exact length (elsewhere FFmpeg may guess from the bitrate).
_EXACT_LENGTH_FORMATS = {"flac", "ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "aiff"}
#: Demuxers for still images: FFmpeg opens a PNG or JPEG as a one-frame "video".
_IMAGE_FORMATS = ("image2", "gif", "apng")


class MediaInfo(msgspec.Struct, frozen=True):
    """What a media header says about its best audio stream."""

    format: str
    codec: str
    duration: float | None
    sample_rate: int
    channels: int


def decode_audio(
    source: Source,
    *,
    name: str | None = None,
    max_duration: float | None = None,
    min_duration: float = 0.0,
    pcm16: bool = False,
) -> Audio:
    """Decodes the best audio stream of a media file to 16 kHz mono float32 (or 16-bit PCM), with
    a constant offset near its speech level taken off (``remove_offset``). Channels are mixed, unless
    their mix cancels (``CANCEL_RATIO``): then the file is decoded again from its loudest channel.

    Args:
        source: A path, the file's bytes, or a binary file object (read from its current position).
        name: What errors and the result call the input; default the path, "<bytes>", "<stream>".
        max_duration: Longest accepted length in seconds (None: no limit; the service's limit is a
            setting, ``IAM_MAX_AUDIO_SECONDS``), checked on the header and while decoding, so a huge
            file never fills memory.
        min_duration: Shortest accepted length in seconds.
        pcm16: Keep the samples as int16 PCM (1.9 MB a minute instead of 3.8): what the service
            does, so that a worker's memory grows by less than 2 MB per minute of audio.

    Returns:
        The ``Audio``, whose ``source`` is ``name``.

    Raises:
        MediaError: Missing, empty, not media, no audio stream, truncated or corrupt, or outside
            the duration limits; ``code`` says which.
    """
    label, target, head = _prepare(source, name)
    power = _ChannelPower()
    raw, declared, stats = _decode_pass(label, target, head, max_duration, pcm16, None, power)
    if (channel := power.cancelled()) is not None:
        if not isinstance(target, str):
            target.seek(0)
        raw, declared, stats = _decode_pass(label, target, head, max_duration, pcm16, channel, None)
    samples = np.frombuffer(raw.getbuffer(), dtype=np.int16 if pcm16 else np.float32)
    remove_offset(samples)
    if not pcm16:  # the resampler's filter overshoots full-scale peaks a little; floats stay in [-1, 1]
        np.clip(samples, -1.0, 1.0, out=samples)
    duration = len(samples) / SAMPLE_RATE
    if declared is not None and declared - duration > max(0.5, 0.05 * declared):
        reason = f"ends after {duration:.1f} s of the {declared:.1f} s its header declares"
        raise MediaError(label, reason, "truncated_media")
    # A few bad packets are tolerated (one glitch should not cost a meeting); many mean corruption.
    bad, packets = stats["bad"], stats["packets"]
    if bad > max(3, 0.01 * packets) or (bad and not len(samples)):
        raise MediaError(label, f"{bad} of {packets} audio packets are corrupt", "truncated_media")
    if not len(samples):
        raise MediaError(label, "contains no audio samples", "empty_media")
    if duration < min_duration:
        reason = f"is {duration:.2f} s long, under the {min_duration:g} s minimum"
        raise MediaError(label, reason, "too_short")
    return Audio(source=label, samples=samples)


def _decode_pass(label: str, target: str | BinaryIO, head: bytes, max_duration: float | None, pcm16: bool,
                 channel: int | None, power: _ChannelPower | None) -> tuple[io.BytesIO, float | None, dict]:
    """One decoding of the input to 16 kHz: the channels mixed (``channel`` None) or one of them;
    ``power`` (if given) measures the source's channels on the way. Returns the samples' bytes,
    the header's duration and the packet counts."""
    with _open(label, target, head) as container:
        stream = _audio_stream(label, container)
        declared = _header_duration(container, stream, head)
        if max_duration is not None and declared is not None and declared > max_duration:
            raise _too_long(label, declared, max_duration)  # cheap: nothing decoded yet
        stats = {"packets": 0, "bad": 0}
        raw = io.BytesIO()
        try:
            frames = _decode_frames(label, container, stream, max_duration, stats)
            if power is not None:
                frames = power.watch(frames)
            for samples in _resampled(frames, "s16" if pcm16 else "flt", channel):
                raw.write(samples)
        except _AV_ERRORS as exc:
            reason = "audio data is corrupt or cut off (decoding failed part-way)"
            raise MediaError(label, reason, "truncated_media") from exc
        finally:
            _collect()
    return raw, declared, stats


class _ChannelPower:
    """Power of a recording's channels and of their equal-weight mix, summed over every
    ``_POWER_STRIDE``-th frame (cancellation is a property of the whole recording)."""

    def __init__(self) -> None:
        self.channels: np.ndarray | None = None
        self.mix = 0.0
        self.frames = 0

    def watch(self, frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
        for frame in frames:
            count = len(frame.layout.channels)
            same_layout = self.channels is None or len(self.channels) == count
            if count > 1 and self.frames % _POWER_STRIDE == 0 and same_layout:
                self._add(frame, count)
            self.frames += 1
            yield frame

    def _add(self, frame: av.AudioFrame, count: int) -> None:
        x = frame.to_ndarray()
        x = (x.T if frame.format.is_planar else x.reshape(-1, count)).astype(np.float32)
        if frame.format.name.startswith("u8"):
            x -= 128.0
        power = (x * x).sum(axis=0, dtype=np.float64)
        self.channels = power if self.channels is None else self.channels + power
        mix = x.mean(axis=1)
        self.mix += float(np.dot(mix, mix))

    def cancelled(self) -> int | None:
        """The loudest channel when the mix cancels (``CANCEL_RATIO``), else None."""
        if self.channels is None or self.channels.max() <= 0:
            return None
        if self.mix >= CANCEL_RATIO * self.channels.mean():
            return None
        return int(np.argmax(self.channels))


def remove_offset(samples: np.ndarray) -> float:
    """Take a constant offset off ``samples`` (float32 in [-1, 1] or 16-bit PCM) in place when it
    is within ``DC_MARGIN_DB`` of their speech level; returns the offset removed, in full-scale
    units (0.0: none).

    The offset is rounded to a step of 16-bit PCM, so a 16-bit source comes out the same whether
    it is kept as PCM (the service) or as floats (the CLI)."""
    from iam_cluster.pipeline.level import speech_level

    if not len(samples):
        return 0.0
    pcm = samples.dtype == np.int16
    steps = round(float(samples.mean(dtype=np.float64)) * (1.0 if pcm else 32768.0))
    offset = steps / 32768.0
    if steps == 0:
        return 0.0
    level = speech_level(samples)
    if level is None or 20 * np.log10(abs(offset)) < level - DC_MARGIN_DB:
        return 0.0
    for i in range(0, len(samples), _DC_BLOCK):
        block = samples[i : i + _DC_BLOCK]
        if pcm:
            block[:] = np.clip(block.astype(np.int32) - steps, -32768, 32767)
        else:
            block -= np.float32(offset)
    return offset


def probe(source: Source, *, name: str | None = None) -> MediaInfo:
    """Reads a media header, decoding nothing, and describes its best audio stream.

    Args:
        source: As for ``decode_audio``.
        name: What errors call the input; defaults as in ``decode_audio``.

    Returns:
        Container format, codec, duration (FFmpeg's, possibly estimated; None if unknown),
        sample rate and channels.

    Raises:
        MediaError: Missing, empty, not media, or no audio stream.
    """
    label, target, head = _prepare(source, name)
    with _open(label, target, head) as container:
        stream = _audio_stream(label, container)
        ctx = stream.codec_context
        return MediaInfo(
            format=container.format.name,
            codec=ctx.codec.canonical_name,
            duration=_declared_duration(container, stream),
            sample_rate=ctx.sample_rate,
            channels=ctx.channels,
        )


def _prepare(source: Source, name: str | None) -> tuple[str, str | BinaryIO, bytes]:
    """Returns the label, what ``av.open`` should read, and the first bytes of the input."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label, target, head = name or "<bytes>", io.BytesIO(data), data[:_HEAD_BYTES]
    elif isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(source)
        label = name or path
        try:
            with open(path, "rb") as f:
                head = f.read(_HEAD_BYTES)
        except OSError as exc:
            reason = _OS_ERRORS.get(type(exc), f"cannot read file ({exc.strerror or exc})")
            raise MediaError(label, reason) from exc
        # "file:" stops FFmpeg reading "http://..." or "concat:..." in a path as a protocol.
        target = "file:" + path
    else:
        label = name or "<stream>"
        try:
            if source.seekable() and source.tell() == 0:
                head = source.read(_HEAD_BYTES)
                source.seek(0)
                target = source
            else:
                # PyAV seeks to absolute offsets, so a stream it cannot rewind is buffered whole.
                data = source.read()
                target, head = io.BytesIO(data), data[:_HEAD_BYTES]
        except (OSError, ValueError) as exc:
            raise MediaError(label, f"cannot read stream ({exc})") from exc
    if not head:
        raise MediaError(label, "is empty (0 bytes)", "empty_media")
    return label, target, head


def _open(label: str, target: str | BinaryIO, head: bytes) -> InputContainer:
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except _AV_ERRORS as exc:
        # A recognised media signature FFmpeg cannot parse is a damaged file, not a wrong one.
        if head.startswith(_MEDIA_MAGIC) or head[4:8] == b"ftyp":
            reason = "media file is damaged or truncated"
            raise MediaError(label, reason, "truncated_media") from exc
        raise MediaError(label, "not an audio or video file") from exc


def _audio_stream(label: str, container: InputContainer) -> AudioStream:
    if not container.streams.audio:
        fmt = container.format.name
        image = fmt.endswith("pipe") or fmt in _IMAGE_FORMATS
        video = container.streams.video and not image
        reason = "no audio stream (video only)" if video else "not an audio or video file"
        raise MediaError(label, reason)
    stream = container.streams.best("audio") or container.streams.audio[0]
    if stream.codec_context is None:  # this FFmpeg build has no decoder for it
        raise MediaError(label, "audio codec is not supported")
    return stream


def _declared_duration(container: InputContainer, stream: AudioStream) -> float | None:
    """The audio's length by the header, or None when the header does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    # The container's duration spans all streams, so it only speaks for audio-only files.
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _header_duration(container: InputContainer, stream: AudioStream, head: bytes) -> float | None:
    """The length the header states exactly, or None where FFmpeg could only estimate it.

    Truncation and the early length limit are judged on this: a bitrate estimate (a VBR MP3
    without a Xing tag, ADTS AAC) can be far off and must not reject a sound file.
    """
    fmt = container.format.name
    if fmt == "wav":
        return _wav_duration(head)
    if fmt == "mp3" and stream.codec_context.codec.canonical_name == "mp3":
        return _xing_duration(head, stream.codec_context.sample_rate)
    return _declared_duration(container, stream) if fmt in _EXACT_LENGTH_FORMATS else None


def _wav_duration(head: bytes) -> float | None:
    """Seconds the RIFF ``data`` chunk claims (FFmpeg silently caps it at the bytes present)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk == b"data":
            # Recorders writing to a pipe leave 0 or ~4 GiB here; that claims nothing.
            return size / byte_rate if byte_rate and 0 < size < 0x7FFF0000 else None
        pos += 8 + size + (size & 1)
    return None


def _xing_duration(head: bytes, rate: int) -> float | None:
    """Seconds an MP3's Xing/Info or VBRI tag claims: its frame count times samples per frame.

    Read here rather than trusted from FFmpeg, which falls back to a bitrate guess when the tag
    disagrees with the file size (as in MP3s joined with ``cat``).
    """
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:  # skip the ID3v2 tag; its size is syncsafe
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    first = head[start : start + 4096]
    frames = None
    if (at := max(first.find(b"Xing"), first.find(b"Info"))) >= 0 and len(first) >= at + 12:
        if first[at + 7] & 1:  # flags: frame count present
            frames = int.from_bytes(first[at + 8 : at + 12], "big")
    elif (at := first.find(b"VBRI")) >= 0 and len(first) >= at + 18:
        frames = int.from_bytes(first[at + 14 : at + 18], "big")
    if not frames or not rate:
        return None
    return frames * (1152 if rate >= 32000 else 576) / rate  # MPEG-1 vs MPEG-2/2.5 layer III


def _decode_frames(
    label: str, container: InputContainer, stream: AudioStream, limit: float | None, stats: dict
) -> Iterator[av.AudioFrame]:
    """Yields decoded frames, skipping corrupt packets and stopping once over ``limit`` seconds."""
    seconds = 0.0
    for packet in container.demux(stream):
        stats["packets"] += 1
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            stats["bad"] += 1
            continue
        for frame in frames:
            seconds += frame.samples / frame.sample_rate
            if limit is not None and seconds > limit:
                # Decoding stops here, so the real length stays unknown.
                raise _too_long(label, seconds, limit, more="more than ")
            yield frame


def _too_long(label: str, seconds: float, limit: float, more: str = "") -> MediaError:
    reason = f"is {more}{seconds:.1f} s long, over the {limit:g} s limit"
    return MediaError(label, reason, "too_long")


def _resampled(frames: Iterator[av.AudioFrame], sample_format: str = "flt",
               channel: int | None = None) -> Iterator[np.ndarray]:
    """Groups frames (as faster-whisper does) and resamples them to 16 kHz (float32 or s16): the
    channels mixed to mono, or only ``channel``."""
    fifo = resampler = key = None
    for frame in itertools.chain(frames, [None]):
        new_key = frame is not None and (frame.format.name, frame.layout.name, frame.sample_rate)
        if key is not None and new_key != key:
            # A fifo and a resampler each take one input format, and an MP3 may switch rate
            # mid-stream: drain both, then start fresh ones.
            if fifo.samples:
                yield from _picked(resampler.resample(fifo.read()), channel)
            yield from _picked(resampler.resample(None), channel)
            key = None
        if frame is None:
            return
        if key is None:
            fifo, key = av.AudioFifo(), new_key
            layout = "mono" if channel is None else frame.layout.name
            resampler = av.AudioResampler(format=sample_format, layout=layout, rate=SAMPLE_RATE)
        frame.pts = None  # the fifo checks timestamps, which damaged files get wrong
        fifo.write(frame)
        if fifo.samples >= _GROUP_SAMPLES:
            yield from _picked(resampler.resample(fifo.read()), channel)


def _picked(frames: list[av.AudioFrame], channel: int | None) -> Iterator[np.ndarray]:
    """The samples of resampled (packed) frames: all of a mono frame, or one channel's."""
    for frame in frames:
        samples = frame.to_ndarray()
        if channel is None:
            yield samples
        else:
            yield np.ascontiguousarray(samples.reshape(-1, len(frame.layout.channels))[:, channel])
