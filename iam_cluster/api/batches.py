"""Batches: an uploaded zip/tar archive becomes one meeting and one ordinary job per recording.

The archive streams to storage under the upload limit, is listed with the archive limits (zip-slip
names, zip bombs and too many members refused before anything is decompressed), and each member
is stored and probed one at a time. The whole batch's minutes are checked against the plan up
front (402 with the shortfall); then every recording is queued as a job the existing worker runs,
so each file is metered and billed exactly once. Members that are not usable audio are recorded
with their error code and never queued. When the last job ends, ``batch_completed`` is pushed on
the WebSocket (by whoever ended it).
"""

from __future__ import annotations

import datetime as dt
import io
import posixpath
import tempfile
import uuid
import zipfile
from decimal import Decimal
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from botocore.exceptions import ClientError
from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from iam_cluster import events
from iam_cluster.api.deps import transaction
from iam_cluster.api.errors import APIError
from iam_cluster.api.jobs import cancel_for
from iam_cluster.api.limits import upload_slot
from iam_cluster.api.openapi import errors
from iam_cluster.api.uploads import (
    extension,
    probe_stored,
    receive_upload,
    upload_operation,
)
from iam_cluster.archive.limits import ArchiveLimits
from iam_cluster.archive.sources import list_items, open_source, read_items
from iam_cluster.billing import quotas
from iam_cluster.billing.plans import billable_minutes
from iam_cluster.db.queries import QUERIES, fetch_all, fetch_one
from iam_cluster.db.rows import User
from iam_cluster.errors import IAMError, MediaError
from iam_cluster.queue import AsyncJobs
from iam_cluster.settings import Settings
from iam_cluster.storage import Storage
from iam_cluster.webhooks import outbox


class Intake(msgspec.Struct):
    """One archive member after intake: stored audio with its length, or why it was refused."""

    key: str
    stored: str | None = None
    size: int = 0
    format: str | None = None
    duration: float = 0.0
    error_code: str | None = None
    error_message: str | None = None


class BatchOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str | None = None
    status: str
    total: int
    counts: dict[str, int]
    completed_audio_seconds: float = 0.0
    created_at: dt.datetime
    finished_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None


class BatchItemOut(msgspec.Struct, kw_only=True):
    key: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    duration_seconds: float | None = None
    meeting_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    #: Where the transcript is, once completed (``?format=txt|srt|vtt|rttm`` for the others).
    transcript_url: str | None = None


class S3Batch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/v1/batches`` with a JSON body: the recordings under an S3 prefix the server may read."""

    s3_prefix: Annotated[str, msgspec.Meta(min_length=6, max_length=1024)]
    name: Annotated[str, msgspec.Meta(max_length=255)] | None = None


def intake(storage: Storage, archive_key: str, prefix: str, settings: Settings) -> list[Intake]:
    """Lists the stored archive (refusing it as a whole when unsafe or over its limits) and stores each
    member as its own object, probed as audio; runs in a worker thread.

    Raises:
        ArchiveError: the archive is refused (its code says why).
    """
    with storage.local_path(archive_key) as path:
        source = open_source(str(path), ArchiveLimits())
        if source.kind not in ("zip", "tar"):
            raise APIError("bad_archive", "the upload is not a zip or tar archive")
        return _store_members(storage, read_items(source, list_items(source)), prefix, settings)


def intake_s3(storage: Storage, uri: str, prefix: str, settings: Settings) -> list[Intake]:
    """Lists the objects under ``uri`` (with the archive limits: member count, sizes, unsafe names) and
    stores each as its own object, probed as audio; runs in a worker thread.

    Raises:
        ArchiveError: the prefix is refused as a whole (its code says why), or holds nothing.
    """
    from iam_cluster.archive.sources import s3_client

    client = s3_client(storage=settings.storage)
    source = open_source(uri, ArchiveLimits())
    try:
        items = list_items(source, client)
    except ClientError as exc:  # no such bucket, access denied: the caller named something unreadable
        raise APIError("bad_archive", f"{uri}: cannot be listed ({exc.response['Error'].get('Code')})") from None
    if not items:
        raise APIError("bad_archive", f"{uri}: no objects under this prefix")
    return _store_members(storage, read_items(source, items, client), prefix, settings)


def _store_members(storage: Storage, members, prefix: str, settings: Settings) -> list[Intake]:
    """Each member stored as its own object and probed as audio (or recorded with why it was refused)."""
    out: list[Intake] = []
    for n, (item, media) in enumerate(members):
        if isinstance(media, IAMError):
            out.append(Intake(item.key, error_code=media.code, error_message=media.message))
            continue
        key = f"{prefix}/{n:05d}.{extension(posixpath.basename(item.key))}"
        stored = storage.put_stream(key, iter(lambda m=media: m.read(1024 * 1024), b""),
                                    settings.storage.max_upload_bytes)
        try:
            info = probe_stored(storage, key, item.key, stored.size, settings.audio)
        except MediaError as exc:
            storage.delete(key)
            out.append(Intake(item.key, error_code=exc.code, error_message=exc.message))
            continue
        out.append(Intake(item.key, key, stored.size, info.format.split(",")[0], info.duration or 0.0))
    return out


def allowed_s3_prefix(uri: str, allowed: tuple[str, ...], user_id: uuid.UUID) -> str:
    """``uri`` as a folder prefix (``s3://bucket/prefix/``) when it lies under one of the ``allowed``
    prefixes (``{user_id}`` in them is the caller's id).

    Raises:
        APIError: not an S3 prefix, or ``.``/``..``/empty path segments (422 ``invalid_source``);
            under none of the allowed prefixes, or none configured (403 ``forbidden``).
    """
    from iam_cluster.archive.sources import split_s3

    if not uri.startswith("s3://"):
        raise APIError("invalid_source", "s3_prefix must be an s3://bucket/prefix/ URI")
    bucket, key = split_s3(uri)
    parts = key.rstrip("/").split("/") if key.rstrip("/") else []
    if any(p in ("", ".", "..") for p in parts) or any(c in uri for c in "\\\0?#"):
        raise APIError("invalid_source", "s3_prefix has an empty, '.' or '..' segment, or a '\\', '?' or '#'")
    folder = "/".join(parts) + "/" if parts else ""
    for pattern in allowed:
        a_bucket, a_key = split_s3(pattern.replace("{user_id}", str(user_id)))
        a_key = a_key if not a_key or a_key.endswith("/") else a_key + "/"
        if a_bucket == bucket and folder.startswith(a_key):
            return f"s3://{bucket}/{folder}"
    raise APIError("forbidden", "this server does not read recordings from that S3 prefix")


_S3_BODY = Schema(type=OpenAPIType.OBJECT, required=["s3_prefix"], properties={
    "s3_prefix": Schema(type=OpenAPIType.STRING, description="s3://bucket/prefix/ under IAM_BATCH_S3_PREFIXES"),
    "name": Schema(type=OpenAPIType.STRING, description="the batch's name (default: the prefix)")})


@post("/", status_code=HTTP_201_CREATED, operation_class=upload_operation(json=_S3_BODY), opt={"upload": True},
      responses=errors(402, 408, {
          403: "The S3 prefix is not under one the server may read (`forbidden`), or the key lacks the scope.",
          422: "The archive or prefix is refused: not a zip/tar (`bad_archive`), an unsafe member name "
               "(`unsafe_member`), a malformed S3 prefix (`invalid_source`), or nothing under it."}))
async def create_batch(
    request: Request, current_user: NamedDependency[User], settings: NamedDependency[Settings],
    storage: NamedDependency[Storage],
    filename: Annotated[str | None, QueryParameter(max_length=255, description="the archive's name")] = None,
    language: Annotated[str | None, QueryParameter(max_length=10)] = None,
) -> BatchOut:
    """Upload a zip or tar archive (raw body or multipart ``file``), or name an S3 prefix the server may
    read (JSON ``{"s3_prefix": "s3://bucket/prefix/"}``): one job per recording in it."""
    from iam_cluster.pipeline.types import parse_options

    options = msgspec.to_builtins(parse_options({"language": language} if language else {}))
    batch_prefix = f"users/{current_user.id}/batches/{uuid.uuid4().hex}"
    state = request.app.state
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        return await _create_from_s3(request, current_user, settings, storage, options, batch_prefix)
    async with upload_slot(state.redis_gate, state.redis, settings.redis.key_prefix, current_user.id,
                           settings.api.max_concurrent_uploads):
        received = await receive_upload(request, storage, lambda name: f"{batch_prefix}/archive.{extension(name)}",
                                        settings.storage.max_upload_bytes, settings.api.upload_read_timeout_s,
                                        filename)
    stored: list[Intake] = []
    try:
        items = await anyio.to_thread.run_sync(intake, storage, received.key, batch_prefix, settings)
        stored = [i for i in items if i.stored]
        async with transaction(state.pool) as conn:
            batch, finished = await _queue(conn, current_user, received.filename, items, options, settings)
    except BaseException:
        for i in stored:
            await anyio.to_thread.run_sync(storage.delete, i.stored)
        raise
    finally:
        await anyio.to_thread.run_sync(storage.delete, received.key)
    await _publish_finished(request, current_user, finished)
    return batch


async def _create_from_s3(request: Request, user: User, settings: Settings, storage: Storage, options: dict,
                          batch_prefix: str) -> BatchOut:
    body = b""
    async for chunk in request.stream():  # at most 4 KiB is read, whatever the upload limit
        body += chunk
        if len(body) > 4096:
            raise APIError("too_large", "the JSON body of a batch is at most 4 KiB")
    try:
        spec = msgspec.json.decode(body, type=S3Batch)
    except msgspec.ValidationError as exc:
        raise APIError("invalid_source", str(exc)) from None
    except msgspec.DecodeError:
        raise APIError("bad_request", "the body is not JSON") from None
    uri = allowed_s3_prefix(spec.s3_prefix, settings.storage.batch_s3_prefixes, user.id)
    stored: list[Intake] = []
    try:
        items = await anyio.to_thread.run_sync(intake_s3, storage, uri, batch_prefix, settings)
        stored = [i for i in items if i.stored]
        async with transaction(request.app.state.pool) as conn:
            batch, finished = await _queue(conn, user, spec.name or uri[-255:], items, options, settings)
    except BaseException:
        for i in stored:
            await anyio.to_thread.run_sync(storage.delete, i.stored)
        raise
    await _publish_finished(request, user, finished)
    return batch


async def _queue(conn: AsyncConnection, user: User, name: str | None, items: list[Intake], options: dict,
                 settings: Settings) -> tuple[BatchOut, dict | None]:
    """Checks the whole batch against the plan, then creates its meetings and jobs (one transaction);
    a batch with nothing to run (every member refused) is finished at once (its row is returned)."""
    minutes = [billable_minutes(i.duration) for i in items if i.stored]
    try:
        await quotas.check_minutes(conn, user.id, sum(minutes, Decimal(0)))
    except quotas.QuotaExceeded as exc:
        short = exc.needed - (exc.usage.remaining_minutes or Decimal(0))
        raise APIError("quota_exceeded", f"{exc} (short by {short} minutes)") from None
    row = await fetch_one(conn, "batch_create", {"user_id": user.id, "name": name, "options": Jsonb(options),
                                                 "total_items": len(items)})
    jobs = AsyncJobs(conn)
    for item in items:
        meeting_id = job_id = None
        if item.stored:
            meeting = await fetch_one(conn, "meetings_api_create", {"user_id": user.id, "title": item.key[-200:],
                                                                    "description": None, "meeting_date": None})
            meeting_id = meeting["id"]
            await fetch_one(conn, "meetings_api_set_audio", {
                "id": meeting_id, "user_id": user.id, "key": item.stored, "size": item.size, "format": item.format,
                "filename": posixpath.basename(item.key)[:200], "duration": item.duration})
            queued = await jobs.enqueue(user.id, meeting_id, options, max_attempts=settings.worker.max_attempts)
            job_id = queued.job.id
            await quotas.reserve(conn, user.id, job_id, billable_minutes(item.duration))
        await conn.execute(QUERIES["batch_item_add"], {
            "batch_id": row["id"], "key": item.key, "meeting_id": meeting_id, "job_id": job_id,
            "error_code": item.error_code, "error_message": item.error_message,
            "duration": item.duration if item.stored else None})
    finished = await fetch_one(conn, "batch_finish_if_empty", {"id": row["id"]})
    if finished is not None:
        await _record_finished(conn, user, finished["id"])
    return await _batch(conn, user, row["id"]), finished


async def _record_finished(conn: AsyncConnection, user: User, batch_id: uuid.UUID) -> None:
    """The ``batch.completed`` webhook deliveries, in the transaction that marked the batch finished."""
    row = await fetch_one(conn, "batch_get", {"id": batch_id, "user_id": user.id})
    await outbox.record_async(conn, user.id, *outbox.batch_event(row))


async def _publish_finished(request: Request, user: User, finished: dict | None) -> None:
    """The ``batch_completed`` live event, after the commit."""
    if finished is not None:
        state = request.app.state
        prefix = state.settings.redis.key_prefix
        await state.redis_gate.call(lambda: events.publish(state.redis, prefix, user.id, "batch_completed",
                                                           events.batch_completed(finished)))


async def _batch(conn: AsyncConnection, user: User, batch_id: uuid.UUID) -> BatchOut:
    row = await fetch_one(conn, "batch_get", {"id": batch_id, "user_id": user.id})
    if row is None:
        raise APIError("not_found", "batch not found")
    counts = {k: row[k] for k in ("queued", "processing", "completed", "failed", "cancelled")}
    active = counts["queued"] + counts["processing"]
    status = "processing" if active else "cancelled" if row["cancelled_at"] else "completed"
    return BatchOut(id=row["id"], name=row["name"], status=status, total=row["total_items"], counts=counts,
                    completed_audio_seconds=round(float(row["completed_seconds"]), 3), created_at=row["created_at"],
                    finished_at=row["finished_at"], cancelled_at=row["cancelled_at"])


@get("/{batch_id:uuid}")
async def get_batch(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                    batch_id: FromPath[uuid.UUID]) -> BatchOut:
    """The batch's status and its items' counts by state."""
    return await _batch(conn, current_user, batch_id)


@get("/{batch_id:uuid}/items")
async def list_items_of(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User], batch_id: FromPath[uuid.UUID],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, QueryParameter(ge=0)] = 0,
) -> list[BatchItemOut]:
    """Each recording: status, error, and a link to its transcript once completed."""
    await _batch(conn, current_user, batch_id)
    rows = await fetch_all(conn, "batch_items", {"id": batch_id, "user_id": current_user.id, "limit": limit,
                                                 "offset": offset})
    return [BatchItemOut(**r, transcript_url=f"/api/v1/meetings/{r['meeting_id']}/transcript?format=json"
                         if r["status"] == "completed" else None) for r in rows]


@get("/{batch_id:uuid}/results")
async def results(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                  batch_id: FromPath[uuid.UUID]) -> Stream:
    """A zip of every completed transcript (``PATH.json`` and ``PATH.txt``) and ``manifest.jsonl``."""
    await _batch(conn, current_user, batch_id)
    done = await fetch_all(conn, "batch_results", {"id": batch_id, "user_id": current_user.id})
    items = await fetch_all(conn, "batch_items", {"id": batch_id, "user_id": current_user.id, "limit": 1_000_000,
                                                  "offset": 0})
    bundle = await anyio.to_thread.run_sync(_bundle, done, items)
    return Stream(_chunks(bundle), media_type="application/zip",
                  headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'})


def _bundle(done: list[dict[str, Any]], items: list[dict[str, Any]]):
    from iam_cluster.api.meeting_media import with_speaker_names
    from iam_cluster.pipeline.export import render
    from iam_cluster.pipeline.types import Transcript

    out = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - closed by _chunks
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for r in done:
            t = with_speaker_names(msgspec.convert(r["transcript"], Transcript), r["speaker_names"] or {})
            stem = posixpath.splitext(r["key"])[0] or r["key"]
            for fmt in ("json", "txt"):
                zf.writestr(f"{stem}.{fmt}", render(t, fmt))
        manifest = io.BytesIO()
        for r in items:
            manifest.write(msgspec.json.encode({k: r[k] for k in ("key", "status", "error_code", "error_message",
                                                                  "duration_seconds")}) + b"\n")
        zf.writestr("manifest.jsonl", manifest.getvalue())
    out.seek(0)
    return out


async def _chunks(f):
    with f:
        while chunk := await anyio.to_thread.run_sync(f.read, 1024 * 1024):
            yield chunk


@post("/{batch_id:uuid}/cancel", status_code=HTTP_200_OK)
async def cancel_batch(request: Request, current_user: NamedDependency[User],
                       batch_id: FromPath[uuid.UUID]) -> BatchOut:
    """Cancels every queued job now and every running one at its next window; their minutes are freed."""
    state = request.app.state
    async with transaction(state.pool) as conn:
        if await fetch_one(conn, "batch_mark_cancelled", {"id": batch_id, "user_id": current_user.id}) is None:
            raise APIError("not_found", "batch not found")
        last = None
        for row in await fetch_all(conn, "batch_active_jobs", {"id": batch_id}):
            last = await cancel_for(conn, current_user.id, row["id"]) or last
        finished = await fetch_one(conn, "batch_finish_if_done", {"job_id": last.id}) if last else None
        if finished is not None:
            await _record_finished(conn, current_user, batch_id)
        batch = await _batch(conn, current_user, batch_id)
    await _publish_finished(request, current_user, finished)
    return batch


router = Router(path="/batches", route_handlers=[create_batch, get_batch, list_items_of, results, cancel_batch],
                tags=["batches"])
