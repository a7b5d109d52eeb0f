"""A meeting's stored audio, streamed with HTTP range requests, and its speakers' display names."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import Request, Router, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import Stream
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from iam_cluster.api.errors import APIError
from iam_cluster.api.openapi import BINARY, errors
from iam_cluster.db.queries import fetch_one
from iam_cluster.db.rows import User
from iam_cluster.pipeline.types import Transcript
from iam_cluster.storage import Storage

#: Bytes read from storage per chunk of a response.
CHUNK = 256 * 1024
#: Stored container format (the probe's first name) or file extension -> Content-Type.
MEDIA_TYPES = {
    "wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/ogg",
    "webm": "audio/webm", "matroska": "audio/webm", "mkv": "audio/webm", "mov": "audio/mp4", "mp4": "audio/mp4",
    "m4a": "audio/mp4", "aac": "audio/aac",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
SpeakerName = Annotated[str, msgspec.Meta(max_length=60)]


class SpeakerNames(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Display names by speaker label (``{"SPEAKER_00": "Ada"}``); an empty name restores the label."""

    names: Annotated[dict[str, SpeakerName], msgspec.Meta(max_length=100)]


class SpeakersOut(msgspec.Struct, kw_only=True):
    #: The transcript's speaker labels, in order of first appearance.
    speakers: list[str]
    names: dict[str, str]


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``Range: bytes=...`` header; None for the whole object.

    Several ranges, or a header that is not a byte range, get the whole object (a server may ignore
    Range).

    Raises:
        APIError: ``range_not_satisfiable`` (416) when the range lies outside the object.
    """
    match = _RANGE.match((header or "").strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end or size == 0:
        raise APIError("range_not_satisfiable", f"range outside the {size}-byte object",
                       {"Content-Range": f"bytes */{size}"})
    return start, end


def media_type(audio_format: str | None, filename: str | None) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    return MEDIA_TYPES.get((audio_format or "").lower()) or MEDIA_TYPES.get(ext) or "application/octet-stream"


async def _chunks(storage: Storage, key: str, start: int, end: int) -> AsyncIterator[bytes]:
    stream = await anyio.to_thread.run_sync(storage.open_range, key, start, end)
    try:
        left = end - start + 1
        while left > 0:
            chunk = await anyio.to_thread.run_sync(stream.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await anyio.to_thread.run_sync(stream.close)


@get("/{meeting_id:uuid}/audio", responses=errors(416), opt={"content": {
    200: {"audio/*": BINARY, "application/octet-stream": BINARY}, 206: {"audio/*": BINARY, "application/octet-stream": BINARY}}})
async def get_audio(request: Request, conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                    storage: NamedDependency[Storage], meeting_id: FromPath[uuid.UUID]) -> Stream:
    """The uploaded audio as stored; honours ``Range: bytes=...`` (206) so players can seek."""
    row = await fetch_one(conn, "meeting_audio", {"id": meeting_id, "user_id": current_user.id})
    if row is None:
        raise APIError("not_found", "meeting not found")
    if row["audio_file_url"] is None:
        raise APIError("not_found", "the meeting has no audio")
    size = row["audio_file_size"] or await anyio.to_thread.run_sync(storage.size, row["audio_file_url"])
    span = byte_range(request.headers.get("range"), size)
    start, end = span or (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1),
               "Cache-Control": "private, max-age=3600"}
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Stream(_chunks(storage, row["audio_file_url"], start, end), status_code=206 if span else 200,
                  headers=headers, media_type=media_type(row["audio_format"], row["original_filename"]))


@put("/{meeting_id:uuid}/speakers", responses=errors({400: "A label that is not a speaker of the transcript, or two speakers with one name."}))
async def set_speaker_names(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                            meeting_id: FromPath[uuid.UUID], data: JSONBody[SpeakerNames]) -> SpeakersOut:
    """Replaces the speakers' display names (shown by the web app and used in every export)."""
    row = await fetch_one(conn, "meetings_api_lock", {"id": meeting_id, "user_id": current_user.id})
    if row is None:
        raise APIError("not_found", "meeting not found")
    speakers = list((row["transcript"] or {}).get("speakers") or [])
    names = {label: " ".join(name.split()) for label, name in data.names.items() if name.strip()}
    unknown = sorted(set(names) - set(speakers))
    if unknown:
        raise APIError("invalid_value", f"no such speaker in the transcript: {', '.join(unknown)}")
    if len({n.casefold() for n in names.values()}) < len(names):
        raise APIError("invalid_value", "two speakers cannot have the same name")
    await fetch_one(conn, "meeting_speaker_names_set", {"id": meeting_id, "user_id": current_user.id,
                                                        "names": Jsonb(names)})
    return SpeakersOut(speakers=speakers, names=names)


def with_speaker_names(transcript: Transcript, names: dict[str, str]) -> Transcript:
    """The transcript with each named speaker's label replaced by its name (segments, words, list,
    turns)."""
    if not names:
        return transcript

    def name(label: str | None) -> str | None:
        return names.get(label, label) if label is not None else None

    segments = [msgspec.structs.replace(
        s, speaker=name(s.speaker), words=[msgspec.structs.replace(w, speaker=name(w.speaker)) for w in s.words])
        for s in transcript.segments]
    turns = [msgspec.structs.replace(t, speaker=name(t.speaker)) for t in transcript.speaker_turns]
    return msgspec.structs.replace(transcript, segments=segments, speakers=[name(s) for s in transcript.speakers],
                                   speaker_turns=turns)


router = Router(path="/meetings", route_handlers=[get_audio, set_speaker_names], tags=["meetings"])
