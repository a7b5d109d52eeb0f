"""Transcription jobs in the API: the request (every engine option, validated once: 422 naming the
field), Idempotency-Key replays, and job control — list, look at, cancel, retry."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
from litestar import Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError
from iam_cluster.api.openapi import errors
from iam_cluster.billing import quotas
from iam_cluster.db.queries import QUERIES, fetch_one
from iam_cluster.db.rows import User
from iam_cluster.errors import OptionsError
from iam_cluster.observability.jobs import job_queued
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.queue import AsyncJobs, Job
from iam_cluster.settings import Settings
from iam_cluster.webhooks import outbox, targets

#: The model name OpenAI clients send; it means the model this deployment serves.
OPENAI_MODEL_ALIAS = "whisper-1"


class TranscribeRequest(TranscribeOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every engine option (see ``TranscribeOptions``), the model (one the deployment serves), and
    a URL that gets ``job.completed`` / ``job.failed`` when the job ends."""

    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    callback_url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class JobOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: str
    progress: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    #: ``meeting`` (a meeting's audio, run by a worker) or ``sync`` (one /v1/audio request).
    kind: str | None = None
    meeting_id: uuid.UUID | None = None
    #: True once its owner asked to cancel a running job (it stops at its next window).
    cancel_requested: bool = False


class JobPage(msgspec.Struct, kw_only=True):
    items: list[JobOut]
    #: Pass as ``before`` for the next (older) page; None on the last page.
    next_before: str | None = None


def request_hash(options: TranscribeRequest) -> str:
    """SHA-256 of the options' canonical JSON (defaults filled in, keys sorted)."""
    canonical = msgspec.json.encode(msgspec.to_builtins(options), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def job_options(options: TranscribeRequest) -> dict[str, Any]:
    """The job's options as the worker reads them (``TranscribeOptions`` fields only)."""
    return {k: v for k, v in msgspec.to_builtins(options).items() if k not in ("model", "callback_url")}


async def check_request(options: TranscribeRequest, settings: Settings) -> None:
    """Refuse a model the deployment does not serve, options that model cannot honour, and a callback
    URL that is not a public http(s) target (422 ``invalid_options`` naming the field)."""
    from iam_cluster.pipeline.models import is_multilingual

    served = settings.models.name
    if options.model not in (None, served, OPENAI_MODEL_ALIAS):
        raise OptionsError("model", f"model {options.model!r} is not served here (this server runs {served!r})")
    options.check_model(served, is_multilingual(served))
    if options.callback_url is not None:
        try:
            await anyio.to_thread.run_sync(targets.check, options.callback_url, settings.webhooks.allow_private)
        except targets.UnsafeTarget as exc:
            raise OptionsError("callback_url", exc.message) from None


def job_out(job: Job) -> JobOut:
    return JobOut(id=job.id, status=job.status, progress=job.progress, error_code=job.error_code,
                  error_message=job.error_message, attempts=job.attempts, created_at=job.created_at,
                  started_at=job.started_at, finished_at=job.finished_at, kind=job.kind,
                  meeting_id=job.meeting_id, cancel_requested=job.cancel_requested_at is not None)


def job_response(job: Job, replayed: bool) -> Response[JobOut]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(job_out(job), status_code=HTTP_202_ACCEPTED, headers=headers)


def replay(job: Job, meeting_id: uuid.UUID, digest: str) -> Response[JobOut]:
    """The job a replayed ``Idempotency-Key`` names, if the request is the same; else 409."""
    if job.meeting_id != meeting_id or job.request_hash != digest:
        raise APIError("idempotency_conflict", "this Idempotency-Key was used with a different request")
    return job_response(job, replayed=True)


async def queue_job(conn: AsyncConnection, user: User, meeting: dict[str, Any], options: dict[str, Any],
                    settings: Settings, callback_url: str | None = None, idempotency_key: str | None = None,
                    digest: str | None = None) -> Response[JobOut]:
    """Reserve the meeting's minutes (402 past the plan) and queue its job, in the caller's transaction."""
    if meeting["audio_file_url"] is None:
        raise APIError("conflict", "the meeting has no audio: upload it before transcribing")
    if meeting["job_active"]:
        raise APIError("conflict", "a transcription job is queued or processing for this meeting")
    # The user row is locked from here to the commit: concurrent submissions reserve one at a time.
    try:
        minutes = await quotas.check_quota(conn, user.id, meeting["duration_seconds"])
    except quotas.QuotaExceeded as exc:
        raise APIError("quota_exceeded", str(exc)) from None
    queued = await AsyncJobs(conn).enqueue(user.id, meeting["id"], options, max_attempts=settings.worker.max_attempts,
                                           idempotency_key=idempotency_key, request_hash=digest,
                                           callback_url=callback_url)
    if queued.replayed:  # a concurrent request with the same key committed first
        return replay(queued.job, meeting["id"], digest or "")
    await quotas.reserve(conn, user.id, queued.job.id, minutes)
    job_queued(queued.job.id, meeting["id"], options)
    return job_response(queued.job, replayed=False)


# --- job control ---------------------------------------------------------------------------------

async def cancel_for(conn: AsyncConnection, user_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    """Cancel the user's job (a queued one ends here, as a worker would have ended it: minutes freed,
    meeting marked, webhook recorded); None when it is not theirs or has already ended."""
    job = await AsyncJobs(conn).cancel(user_id, job_id)
    if job is not None and job.status == "cancelled":  # it never ran
        await quotas.release(conn, job.id)
        if job.meeting_id is not None:
            await conn.execute(QUERIES["write_meeting_status"], {"meeting_id": job.meeting_id, "status": "cancelled",
                                                                 "error": job.error_message})
        await outbox.record_async(conn, job.user_id, *outbox.job_event(job), callback_url=job.callback_url)
    return job


@get("/")
async def list_jobs(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    status: Annotated[Literal["queued", "processing", "completed", "failed", "cancelled"] | None,
                      QueryParameter()] = None,
    meeting_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
    before: Annotated[str | None, QueryParameter(max_length=100, description="next_before of the last page")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> JobPage:
    """The caller's jobs, newest first."""
    cursor = None
    if before:
        try:
            at, _, job_id = before.partition("|")
            cursor = (dt.datetime.fromisoformat(at), uuid.UUID(job_id))
        except ValueError:
            raise APIError("bad_request", "before: not a cursor from this API") from None
    jobs = await AsyncJobs(conn).list(current_user.id, status=status, meeting_id=meeting_id, before=cursor,
                                      limit=limit)
    last = jobs[-1] if len(jobs) == limit else None
    return JobPage(items=[job_out(j) for j in jobs],
                   next_before=f"{last.created_at.isoformat()}|{last.id}" if last else None)


@get("/{job_id:uuid}")
async def get_job(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                  job_id: FromPath[uuid.UUID]) -> JobOut:
    """One of the caller's jobs: status, progress, error."""
    job = await AsyncJobs(conn).get(current_user.id, job_id)
    if job is None:
        raise APIError("not_found", "job not found")
    return job_out(job)


@post("/{job_id:uuid}/cancel", status_code=HTTP_200_OK, responses=errors({409: "The job has already ended."}))
async def cancel_job(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                     job_id: FromPath[uuid.UUID]) -> JobOut:
    """Cancel a queued job now, a running one at its next window; its reserved minutes are freed."""
    job = await cancel_for(conn, current_user.id, job_id)
    if job is None:
        found = await AsyncJobs(conn).get(current_user.id, job_id)
        if found is None:
            raise APIError("not_found", "job not found")
        raise APIError("conflict", f"the job has already ended ({found.status})")
    return job_out(job)


@post("/{job_id:uuid}/retry", status_code=HTTP_202_ACCEPTED,
      responses=errors(402, {409: "Only failed or cancelled meeting jobs can be retried."}))
async def retry_job(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                    settings: NamedDependency[Settings], job_id: FromPath[uuid.UUID]) -> Response[JobOut]:
    """Queue a failed or cancelled meeting job again, with the same options (quota checked again)."""
    old = await AsyncJobs(conn).get(current_user.id, job_id)
    if old is None:
        raise APIError("not_found", "job not found")
    if old.status not in ("failed", "cancelled") or old.meeting_id is None:
        raise APIError("conflict", f"only failed or cancelled meeting jobs can be retried (this one is {old.status})")
    meeting = await fetch_one(conn, "meetings_api_lock", {"id": old.meeting_id, "user_id": current_user.id})
    if meeting is None:
        raise APIError("not_found", "the job's meeting no longer exists")
    return await queue_job(conn, current_user, meeting, old.options, settings, callback_url=old.callback_url)


router = Router(path="/jobs", route_handlers=[list_jobs, get_job, cancel_job, retry_job], tags=["jobs"])
