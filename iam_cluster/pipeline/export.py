"""Last pipeline stage: render a Transcript as JSON, plain text, SRT, WebVTT or RTTM and write it out."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import msgspec

from iam_cluster.pipeline.types import Segment, Transcript, Turn

#: Shortest cue we emit, in milliseconds; a cue must end after it starts.
MIN_CUE_MS = 10
#: Same-speaker segments closer than this (seconds) become one RTTM turn: short pauses inside
#: one person's speech are not turn changes, and scoring tools count them as missed speech.
RTTM_MERGE_GAP = 0.5

_decoder = msgspec.json.Decoder(Transcript)


def format_timestamp(seconds: float, decimal: str = ".") -> str:
    """Format seconds as ``HH:MM:SS.mmm``, rounding to the nearest millisecond.

    Rounding happens on the whole value, so 59.9996 gives ``00:01:00.000`` and never ``60.000``.
    Negative times are clamped to zero; hours keep counting past 99.

    Args:
        seconds: Time in seconds.
        decimal: Separator before the milliseconds: ``"."`` for WebVTT, ``","`` for SRT.

    Returns:
        The formatted timestamp.
    """
    return _format_ms(_to_ms(seconds), decimal)


def _to_ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _format_ms(ms: int, decimal: str) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _clean(text: str) -> str:
    """Collapse every whitespace run (newlines included) to one space and strip the ends."""
    return " ".join(text.split())


def _cue_span(segment: Segment) -> tuple[int, int]:
    """The segment's (start, end) in whole milliseconds, with end at least MIN_CUE_MS later."""
    start = _to_ms(segment.start)
    return start, max(_to_ms(segment.end), start + MIN_CUE_MS)


def _cues(transcript: Transcript) -> list[tuple[Segment, str]]:
    """Segments that carry text, each with its cleaned one-line text."""
    return [(s, text) for s in transcript.segments if (text := _clean(s.text))]


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_json(transcript: Transcript) -> str:
    """Render the transcript as indented JSON with an extra top-level ``"text"`` field.

    Args:
        transcript: The transcript to render.

    Returns:
        JSON text that ``transcript_from_json`` reads back to an equal Transcript.
    """
    fields = msgspec.to_builtins(transcript)
    segments = fields.pop("segments")
    doc = {**fields, "text": transcript.text, "segments": segments}
    return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode("utf-8") + "\n"


def transcript_from_json(data: bytes | str) -> Transcript:
    """Decode JSON written by ``to_json`` (the derived ``"text"`` field is ignored).

    Args:
        data: The JSON document, as bytes or str.

    Returns:
        The decoded Transcript.

    Raises:
        msgspec.ValidationError: The document does not describe a Transcript.
        msgspec.DecodeError: The data is not valid JSON.
    """
    return _decoder.decode(data)


def to_txt(transcript: Transcript) -> str:
    """Render one line per non-empty segment, prefixed with ``SPEAKER: `` when diarized.

    Args:
        transcript: The transcript to render.

    Returns:
        Plain text, newline-terminated (empty for a transcript without text).
    """
    lines = [
        f"{_clean(s.speaker)}: {text}" if s.speaker else text for s, text in _cues(transcript)
    ]
    return "".join(line + "\n" for line in lines)


def to_srt(transcript: Transcript) -> str:
    """Render SubRip cues numbered from 1, skipping segments without text.

    Speakers appear as a ``[SPEAKER_00] `` prefix.

    Args:
        transcript: The transcript to render.

    Returns:
        The SRT document.
    """
    blocks = []
    for index, (segment, text) in enumerate(_cues(transcript), start=1):
        start, end = _cue_span(segment)
        if segment.speaker:
            text = f"[{_clean(segment.speaker)}] {text}"
        # "-->" inside a cue would be read as a timing line by some parsers.
        text = text.replace("-->", "->")
        blocks.append(f"{index}\n{_format_ms(start, ',')} --> {_format_ms(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    """Render a WebVTT document, skipping segments without text.

    Speakers appear as voice spans (``<v SPEAKER_00>text``); ``&``, ``<`` and ``>`` are escaped.

    Args:
        transcript: The transcript to render.

    Returns:
        The WebVTT document.
    """
    blocks = ["WEBVTT\n"]
    for segment, text in _cues(transcript):
        start, end = _cue_span(segment)
        text = _vtt_escape(text)
        if segment.speaker:
            text = f"<v {_vtt_escape(_clean(segment.speaker))}>{text}"
        blocks.append(f"{_format_ms(start, '.')} --> {_format_ms(end, '.')}\n{text}\n")
    return "\n".join(blocks)


def _rttm_token(text: str) -> str:
    """RTTM fields are separated by whitespace, so none may hold any."""
    return re.sub(r"\s", "_", text.strip()) or "<NA>"


def to_rttm(transcript: Transcript) -> str:
    """Render speaker turns as RTTM (the format diarization scoring tools read).

    The diarizer's turns (``Transcript.speaker_turns``: speech without words included, overlaps
    kept; touching turns of one speaker joined), else the speakers' segments, one line per run of
    one speaker's segments less than ``RTTM_MERGE_GAP`` apart. The file id is the stem of
    ``transcript.source`` with whitespace replaced by ``_``.

    Args:
        transcript: A diarized transcript.

    Returns:
        The RTTM document (empty when no segment has a speaker).
    """
    file_id = _rttm_token(Path(transcript.source).stem)
    runs: list[list] = []  # [speaker, start ms, end ms]
    timed, gap_ms = transcript.speaker_turns, 1  # the diarizer's turns end at its own pauses
    if not timed:  # a transcript stored before turns were kept, or speech the diarizer heard no voice in
        timed = sorted((s for s in transcript.segments if s.speaker), key=lambda s: (s.start, s.end))
        gap_ms = RTTM_MERGE_GAP * 1000
    for seg in timed:
        speaker = _rttm_token(seg.speaker)
        start, end = _to_ms(seg.start), _to_ms(seg.end)
        if runs and runs[-1][0] == speaker and start - runs[-1][2] < gap_ms:
            runs[-1][2] = max(runs[-1][2], end)
        else:
            runs.append([speaker, start, end])
    return "".join(
        f"SPEAKER {file_id} 1 {start / 1000:.3f} {(end - start) / 1000:.3f} <NA> <NA> {spk} <NA> <NA>\n"
        for spk, start, end in runs
        if end > start
    )


def load_rttm(text: str) -> dict[str, list[Turn]]:
    """Read the ``SPEAKER`` lines of an RTTM document.

    Args:
        text: The RTTM document; blank lines, ``#`` comments and other line types are skipped.

    Returns:
        For each file id, in order of first appearance, its turns sorted by (start, end).

    Raises:
        ValueError: A ``SPEAKER`` line has fewer than 8 fields or bad times (its number is given).
    """
    files: dict[str, list[Turn]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        try:
            file_id, start, duration, speaker = fields[1], float(fields[3]), float(fields[4]), fields[7]
        except (IndexError, ValueError):
            raise ValueError(f"RTTM line {number} is not a valid SPEAKER line: {line!r}") from None
        if duration < 0:
            raise ValueError(f"RTTM line {number} has a negative duration: {line!r}")
        # Rounded to the microsecond so that 1.44 + 11.872 reads back as 13.312.
        files.setdefault(file_id, []).append(Turn(start, round(start + duration, 6), speaker))
    return {f: sorted(turns, key=lambda t: (t.start, t.end, t.speaker)) for f, turns in files.items()}


#: One renderer per output format; register a new format by adding an entry.
_RENDERERS: dict[str, Callable[[Transcript], str]] = {
    "json": to_json,
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "rttm": to_rttm,
}

FORMATS: tuple[str, ...] = tuple(_RENDERERS)


def _allowed() -> str:
    return ", ".join(_RENDERERS)


def render(transcript: Transcript, fmt: str) -> str:
    """Render the transcript in one output format.

    Args:
        transcript: The transcript to render.
        fmt: One of ``FORMATS``.

    Returns:
        The document as text.

    Raises:
        ValueError: ``fmt`` is not a known format.
    """
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown output format {fmt!r}; expected one of: {_allowed()}") from None
    return renderer(transcript)


def write(transcript: Transcript, fmt: str, path: str | Path) -> Path:
    """Render the transcript and write it to ``path`` as UTF-8, creating parent folders.

    Args:
        transcript: The transcript to write.
        fmt: One of ``FORMATS``.
        path: Destination file; overwritten if it exists.

    Returns:
        The path written, as a Path.

    Raises:
        ValueError: ``fmt`` is not a known format (nothing is written).
    """
    text = render(transcript, fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def parse_formats(spec: str) -> list[str]:
    """Parse a comma-separated format list such as ``"json,srt"`` (as given on the command line).

    Names are trimmed and lower-cased; duplicates are dropped, keeping first-seen order.

    Args:
        spec: Comma-separated format names.

    Returns:
        The distinct formats, in the order given.

    Raises:
        ValueError: The list is empty or names a format that is not in ``FORMATS``.
    """
    names = [name.strip().lower() for name in spec.split(",")]
    formats = list(dict.fromkeys(name for name in names if name))
    if not formats:
        raise ValueError(f"no output format given; expected one or more of: {_allowed()}")
    unknown = [name for name in formats if name not in _RENDERERS]
    if unknown:
        raise ValueError(
            f"unknown output format(s): {', '.join(unknown)}; expected one or more of: {_allowed()}"
        )
    return formats
