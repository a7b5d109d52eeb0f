"""First pipeline stage: any audio or video file PyAV reads becomes 16 kHz mono float32 samples."""

from __future__ import annotations

import gc
import io
import itertools
import os
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
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError, ValueError)
#: Starts of files that are media even when FFmpeg cannot open them (then they are damaged).
_MEDIA_MAGIC = (b"RIFF", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3")
#: Demuxers for still images: FFmpeg opens a PNG or JPEG as a one-frame "video".
_IMAGE_FORMATS = ("image2", "gif", "apng")


class MediaInfo(msgspec.Struct, frozen=True):
    """What a media header says about its first audio stream."""

    format: str
    codec: str
    duration: float | None
    sample_rate: int
    channels: int


def decode_audio(
    source: Source,
    *,
    name: str | None = None,
    max_duration: float | None = 4 * 3600,
    min_duration: float = 0.0,
) -> Audio:
    """Decodes the first audio stream of a media file to 16 kHz mono float32.

    Args:
        source: A path, the file's bytes, or a binary file object (read from its current position).
        name: What errors and the result call the input; defaults to the path, "<bytes>" or
            "<stream>".
        max_duration: Longest accepted recording in seconds (None: no limit). Checked on the
            header before decoding and while decoding, so a huge file never fills memory.
        min_duration: Shortest accepted recording in seconds.

    Returns:
        The decoded ``Audio``, whose ``source`` is ``name``.

    Raises:
        MediaError: The input is missing, empty, not media, has no audio stream, is truncated or
            corrupt, or is outside the duration limits; ``code`` says which.
    """
    label, target, head = _prepare(source, name)
    with _open(label, target, head) as container:
        stream = _audio_stream(label, container)
        declared = _declared_duration(container, stream)
        if max_duration is not None and declared is not None and declared > max_duration:
            raise _too_long(label, declared, max_duration)
        stats = {"packets": 0, "bad": 0}
        raw = io.BytesIO()
        try:
            for frame in _resampled(_decode_frames(label, container, stream, max_duration, stats)):
                raw.write(frame.to_ndarray())
        except _AV_ERRORS as exc:
            raise MediaError(label, f"decoding failed part-way ({exc})", "truncated_media") from exc
        finally:
            # PyAV's resampler leaks unless the collector runs (faster-whisper issue #390).
            gc.collect()

    samples = np.frombuffer(raw.getbuffer(), dtype=np.float32)
    duration = len(samples) / SAMPLE_RATE
    # FFmpeg caps a WAV's length at the bytes present, so the header's own claim is read too.
    expected = max(filter(None, (declared, _wav_declared_duration(head))), default=None)
    if expected is not None and expected - duration > max(0.5, 0.05 * expected):
        reason = f"ends after {duration:.1f} s of the {expected:.1f} s its header declares"
        raise MediaError(label, reason, "truncated_media")
    if len(samples) == 0:
        if stats["bad"]:
            raise MediaError(label, "audio data is corrupt", "truncated_media")
        raise MediaError(label, "contains no audio samples", "empty_media")
    # A few bad packets are tolerated (one glitch should not cost a meeting); many mean corruption.
    if stats["bad"] > max(3, 0.01 * stats["packets"]):
        reason = f"{stats['bad']} of {stats['packets']} audio packets are corrupt"
        raise MediaError(label, reason, "truncated_media")
    if max_duration is not None and duration > max_duration:
        raise _too_long(label, duration, max_duration)
    if duration < min_duration:
        reason = f"is {duration:.2f} s long, under the {min_duration:g} s minimum"
        raise MediaError(label, reason, "too_short")
    return Audio(source=label, samples=samples)


def probe(source: Source, *, name: str | None = None) -> MediaInfo:
    """Reads a media header (no decoding) and describes its first audio stream.

    Args:
        source: A path, the file's bytes, or a binary file object (read from its current position).
        name: What errors call the input; defaults as in ``decode_audio``.

    Returns:
        The container format, codec, declared duration (None when unknown), rate and channels.

    Raises:
        MediaError: The input is missing, empty, not media or has no audio stream.
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
        except FileNotFoundError as exc:
            raise MediaError(label, "file not found") from exc
        except IsADirectoryError as exc:
            raise MediaError(label, "is a directory, not a file") from exc
        except PermissionError as exc:
            raise MediaError(label, "permission denied") from exc
        except OSError as exc:
            raise MediaError(label, f"cannot read file ({exc.strerror or exc})") from exc
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
    if container.streams.audio:
        return container.streams.best("audio") or container.streams.audio[0]
    fmt = container.format.name
    is_image = fmt.endswith("pipe") or fmt in _IMAGE_FORMATS
    if container.streams.video and not is_image:
        raise MediaError(label, "no audio stream (video only)")
    raise MediaError(label, "not an audio or video file")


def _declared_duration(container: InputContainer, stream: AudioStream) -> float | None:
    """The audio's length by the header, or None when the header does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    # The container's duration spans all streams, so it only speaks for audio-only files.
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _wav_declared_duration(head: bytes) -> float | None:
    """Seconds the RIFF ``data`` chunk claims, or None when absent or a streaming placeholder."""
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
                raise _too_long(label, seconds, limit, partial=True)
            yield frame


def _too_long(label: str, seconds: float, limit: float, partial: bool = False) -> MediaError:
    more = "more than " if partial else ""  # decoding stopped at the limit: the length is unknown
    reason = f"is {more}{seconds:.1f} s long, over the {limit:g} s limit"
    return MediaError(label, reason, "too_long")


def _resampled(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """Groups frames (as faster-whisper does) and resamples them to 16 kHz mono float32."""
    fifo = resampler = key = None
    for frame in itertools.chain(frames, [None]):
        new_key = frame is not None and (frame.format.name, frame.layout.name, frame.sample_rate)
        if key is not None and new_key != key:
            # A fifo and a resampler each take one input format, and an MP3 may switch rate
            # mid-stream: drain both, then start fresh ones.
            if fifo.samples:
                yield from resampler.resample(fifo.read())
            yield from resampler.resample(None)
            key = None
        if frame is None:
            return
        if key is None:
            fifo, key = av.AudioFifo(), new_key
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frame.pts = None  # the fifo checks timestamps, which damaged files get wrong
        fifo.write(frame)
        if fifo.samples >= _GROUP_SAMPLES:
            yield from resampler.resample(fifo.read())
