"""Meetings: CRUD, full-text search, streamed audio upload, transcription jobs, polling and transcripts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError, invalid_options
from iam_cluster.api.input_guard import FREE_TEXT
from iam_cluster.api.openapi import OBJECT, TEXT, errors
from iam_cluster.api.jobs import JobOut, TranscribeRequest, check_request, job_options, queue_job, replay, request_hash
from iam_cluster.api.deps import transaction
from iam_cluster.api.limits import upload_slot
from iam_cluster.api.meeting_media import with_speaker_names
from iam_cluster.api.uploads import extension, probe_stored, receive_upload, upload_operation
from iam_cluster.db.errors import Conflict
from iam_cluster.db.pool import convert_row
from iam_cluster.db.queries import fetch_all, fetch_one
from iam_cluster.db.rows import Meeting, User
from iam_cluster.errors import MediaError
from iam_cluster.pipeline.types import Transcript
from iam_cluster.queue import AsyncJobs
from iam_cluster.settings import Settings
from iam_cluster.storage import Storage

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Description = Annotated[str, msgspec.Meta(max_length=5000, extra=FREE_TEXT)]
TranscriptFormat = Literal["json", "txt", "srt", "vtt", "rttm"]
ACTIVE = ("queued", "processing")


# --- API types -----------------------------------------------------------------------------------

class MeetingCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Title
    description: Description | None = None
    meeting_date: dt.datetime | None = None


class MeetingUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out keep their value; ``null`` clears description or meeting_date."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Description | None | msgspec.UnsetType = msgspec.UNSET
    meeting_date: dt.datetime | None | msgspec.UnsetType = msgspec.UNSET


class MeetingOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    title: str
    description: str | None = None
    meeting_date: dt.datetime | None = None
    duration_seconds: float | None = None
    audio_file_size: int | None = None
    audio_format: str | None = None
    original_filename: str | None = None
    has_audio: bool = False
    processing_status: str = "none"
    processing_started_at: dt.datetime | None = None
    processing_completed_at: dt.datetime | None = None
    processing_error: str | None = None
    model_used: str | None = None
    language_detected: str | None = None
    transcription_confidence: float | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class MeetingDetail(MeetingOut, kw_only=True):
    transcription_text: str | None = None
    #: Display names of the transcript's speakers (``PUT .../speakers``).
    speaker_names: dict[str, str] = {}
    #: The latest job: status, progress and error while polling.
    job: JobOut | None = None


class MeetingPage(msgspec.Struct, kw_only=True):
    items: list[MeetingOut]
    total: int
    limit: int
    offset: int


# --- helpers -------------------------------------------------------------------------------------

def _out(row: dict[str, Any], cls: type = MeetingOut) -> Any:
    meeting = convert_row(row, Meeting)
    fields = {f.name for f in msgspec.structs.fields(cls)} - {"has_audio", "job"}
    out = {name: getattr(meeting, name) for name in fields}
    return cls(**out, has_audio=meeting.audio_file_url is not None,
               **({"job": _job_of(row)} if cls is MeetingDetail else {}))


def _job_of(row: dict[str, Any]) -> JobOut | None:
    if row.get("job_id") is None:
        return None
    return JobOut(id=row["job_id"], status=row["job_status"], progress=row["job_progress"],
                  error_code=row["job_error_code"], error_message=row["job_error_message"],
                  attempts=row["job_attempts"], created_at=row["job_created_at"],
                  started_at=row["job_started_at"], finished_at=row["job_finished_at"])


def _not_found() -> APIError:
    return APIError("not_found", "meeting not found")


def _busy() -> APIError:
    return APIError("conflict", "a transcription job is queued or processing for this meeting")


async def _locked(conn: AsyncConnection, meeting_id: uuid.UUID, user: User) -> dict[str, Any]:
    row = await fetch_one(conn, "meetings_api_lock", {"id": meeting_id, "user_id": user.id})
    if row is None:
        raise _not_found()
    return row


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Naive datetimes are taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


# --- routes --------------------------------------------------------------------------------------

@get("/")
async def list_meetings(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    q: Annotated[str | None, QueryParameter(max_length=200, description="full-text search")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
) -> MeetingPage:
    """The caller's meetings, newest first, or those matching ``q`` best first."""
    params = {"user_id": current_user.id, "limit": limit, "offset": offset}
    if q is not None and q.strip():
        rows = await fetch_all(conn, "meetings_api_search", {**params, "q": q})
    else:
        rows = await fetch_all(conn, "meetings_api_list", params)
    return MeetingPage(items=[_out(r) for r in rows], total=rows[0]["total"] if rows else 0,
                       limit=limit, offset=offset)


@post("/", status_code=HTTP_201_CREATED)
async def create_meeting(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         data: JSONBody[MeetingCreate]) -> MeetingDetail:
    """A new meeting (no audio yet: upload it, then transcribe)."""
    row = await fetch_one(conn, "meetings_api_create", {
        "user_id": current_user.id, "title": data.title, "description": data.description,
        "meeting_date": _utc(data.meeting_date)})
    return _out(row, MeetingDetail)


@get("/{meeting_id:uuid}")
async def get_meeting(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                      meeting_id: FromPath[uuid.UUID]) -> MeetingDetail:
    """The meeting with its processing status and latest job (the polling endpoint)."""
    return await _detail(conn, current_user, meeting_id)


async def _detail(conn: AsyncConnection, user: User, meeting_id: uuid.UUID) -> MeetingDetail:
    row = await fetch_one(conn, "meetings_api_get", {"id": meeting_id, "user_id": user.id})
    if row is None:
        raise _not_found()
    return _out(row, MeetingDetail)


@put("/{meeting_id:uuid}")
async def update_meeting(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         meeting_id: FromPath[uuid.UUID], data: JSONBody[MeetingUpdate]) -> MeetingDetail:
    """Change the title, description or date; fields left out keep their value."""
    row = await fetch_one(conn, "meetings_api_update", {
        "id": meeting_id, "user_id": current_user.id,
        "set_title": data.title is not msgspec.UNSET,
        "title": data.title if data.title is not msgspec.UNSET else None,
        "set_description": data.description is not msgspec.UNSET,
        "description": data.description if data.description is not msgspec.UNSET else None,
        "set_meeting_date": data.meeting_date is not msgspec.UNSET,
        "meeting_date": _utc(data.meeting_date) if data.meeting_date is not msgspec.UNSET else None,
    })
    if row is None:
        raise _not_found()
    return await _detail(conn, current_user, meeting_id)


@delete("/{meeting_id:uuid}", status_code=HTTP_204_NO_CONTENT)
async def delete_meeting(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         storage: NamedDependency[Storage], meeting_id: FromPath[uuid.UUID]) -> None:
    """Deletes the meeting, its jobs and its stored audio."""
    row = await fetch_one(conn, "meetings_api_delete", {"id": meeting_id, "user_id": current_user.id})
    if row is None:
        raise _not_found()
    if row["audio_file_url"]:
        # A failure here raises, so the row's deletion rolls back with it.
        await anyio.to_thread.run_sync(storage.delete, row["audio_file_url"])


@post("/{meeting_id:uuid}/upload", status_code=HTTP_200_OK, operation_class=upload_operation(), opt={"upload": True},
      responses=errors(408, 415, 422, {409: "A transcription job is queued or processing for this meeting."}))
async def upload_audio(
    request: Request, current_user: NamedDependency[User], settings: NamedDependency[Settings],
    storage: NamedDependency[Storage], meeting_id: FromPath[uuid.UUID],
    filename: Annotated[str | None, QueryParameter(max_length=255, description="original file name")] = None,
) -> MeetingDetail:
    """Streams the audio to storage, checks it is audio, and records it (replacing earlier audio).

    The body is the file itself, or ``multipart/form-data`` with the file in ``file``. No database
    connection is held while it streams: only two short transactions, before and after.
    """
    pool = request.app.state.pool
    async with transaction(pool) as conn:
        current = await fetch_one(conn, "meetings_api_get", {"id": meeting_id, "user_id": current_user.id})
    if current is None:
        raise _not_found()
    if current["job_status"] in ACTIVE:  # refused before reading the body
        raise _busy()
    prefix = f"users/{current_user.id}/meetings/{meeting_id}/{uuid.uuid4().hex}"
    state = request.app.state
    async with upload_slot(state.redis_gate, state.redis, settings.redis.key_prefix, current_user.id,
                           settings.api.max_concurrent_uploads):
        received = await receive_upload(request, storage, lambda name: f"{prefix}.{extension(name)}",
                                        settings.storage.max_upload_bytes, settings.api.upload_read_timeout_s,
                                        filename)
    try:
        info = await anyio.to_thread.run_sync(probe_stored, storage, received.key, received.filename or "upload",
                                              received.size, settings.audio)
        async with transaction(pool) as conn:
            # Locked only now, not during a slow upload; a job queued meanwhile still wins.
            meeting = await _locked(conn, meeting_id, current_user)
            if meeting["job_active"]:
                raise _busy()
            await fetch_one(conn, "meetings_api_set_audio", {
                "id": meeting_id, "user_id": current_user.id, "key": received.key, "size": received.size,
                "format": info.format.split(",")[0], "filename": received.filename, "duration": info.duration})
            detail = await _detail(conn, current_user, meeting_id)
    except MediaError as exc:
        await anyio.to_thread.run_sync(storage.delete, received.key)
        raise APIError(exc.code, exc.message) from None
    except BaseException:
        await anyio.to_thread.run_sync(storage.delete, received.key)
        raise
    previous = meeting["audio_file_url"]
    if previous and previous != received.key:
        await anyio.to_thread.run_sync(storage.delete, previous)
    return detail


@post("/{meeting_id:uuid}/transcribe", status_code=HTTP_202_ACCEPTED,
      exception_handlers={ValidationException: invalid_options},
      responses=errors(402, {409: "The meeting has no audio, a job is active, or the Idempotency-Key was used "
                                  "with another request.", 422: "Invalid options (`invalid_options`, naming the field)."}))
async def transcribe(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    settings: NamedDependency[Settings], meeting_id: FromPath[uuid.UUID],
    data: JSONBody[TranscribeRequest | None] = None,
    idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", min_length=1,
                                                           max_length=200)] = None,
) -> Response[JobOut]:
    """Queues a transcription job (202). A replayed ``Idempotency-Key`` returns the same job.

    Options are validated here, once: a violation is 422 ``invalid_options`` naming the field.
    """
    data = data or TranscribeRequest()  # no body: the default options
    meeting = await _locked(conn, meeting_id, current_user)
    digest = request_hash(data)
    if idempotency_key is not None:
        existing = await AsyncJobs(conn).by_key(current_user.id, idempotency_key)
        if existing is not None:
            return replay(existing, meeting_id, digest)
    await check_request(data, settings)
    try:
        return await queue_job(conn, current_user, meeting, job_options(data), settings, data.callback_url,
                               idempotency_key, digest if idempotency_key is not None else None)
    except Conflict:  # a concurrent request with the same key but another body committed first
        raise APIError("idempotency_conflict", "this Idempotency-Key was used with a different request") from None


@get("/{meeting_id:uuid}/transcript", responses=errors({409: "No transcript yet."}),
     opt={"content": {200: {"application/json": OBJECT, "text/plain": TEXT}}})
async def get_transcript(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    meeting_id: FromPath[uuid.UUID],
    format: Annotated[TranscriptFormat, QueryParameter()] = "json",  # noqa: A002
) -> Response[bytes]:
    """The finished transcript as JSON, plain text, SRT, WebVTT or RTTM."""
    from iam_cluster.pipeline.export import render

    row = await fetch_one(conn, "meetings_api_whole", {"id": meeting_id, "user_id": current_user.id})
    if row is None:
        raise _not_found()
    meeting = convert_row(row, Meeting)
    if meeting.processing_status != "completed" or meeting.transcript is None:
        raise APIError("conflict", f"no transcript yet: processing status is {meeting.processing_status!r}")
    transcript = with_speaker_names(msgspec.convert(meeting.transcript, Transcript), meeting.speaker_names)
    text = render(transcript, format)
    if format == "json":  # the export carries the meeting's insights too
        from iam_cluster.api.insights import attach_to_export

        text = await attach_to_export(conn, meeting_id, current_user, text)
    media_type = "application/json" if format == "json" else "text/plain; charset=utf-8"
    return Response(text.encode("utf-8"), media_type=media_type)


router = Router(path="/meetings", route_handlers=[
    list_meetings, create_meeting, get_meeting, update_meeting, delete_meeting,
    upload_audio, transcribe, get_transcript,
], tags=["meetings"])
