"""Transcription jobs in the API: the request (every engine option, validated once: 422 naming the
field), how it is hashed for Idempotency-Key replays, and how a job is shown."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Response
from litestar.status_codes import HTTP_202_ACCEPTED

from iam_cluster.api.errors import APIError
from iam_cluster.errors import OptionsError
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.queue import Job
from iam_cluster.settings import Settings


class TranscribeRequest(TranscribeOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every engine option (see ``TranscribeOptions``), and the model: one the deployment serves."""

    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None


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




def request_hash(options: TranscribeRequest) -> str:
    """SHA-256 of the options' canonical JSON (defaults filled in, keys sorted)."""
    canonical = msgspec.json.encode(msgspec.to_builtins(options), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def job_options(options: TranscribeRequest) -> dict[str, Any]:
    """The job's options as the worker reads them (``TranscribeOptions`` fields only).

    ``model`` is left out: it was checked against the model this deployment serves.
    """
    return {k: v for k, v in msgspec.to_builtins(options).items() if k != "model"}


def check_model(options: TranscribeRequest, settings: Settings) -> None:
    """Refuse a model the deployment does not serve, or options that model cannot honour (422)."""
    from iam_cluster.pipeline.models import is_multilingual

    served = settings.models.name
    if options.model is not None and options.model != served:
        raise OptionsError("model", f"model {options.model!r} is not served here (this server runs {served!r})")
    options.check_model(served, is_multilingual(served))


def job_out(job: Job) -> JobOut:
    return JobOut(id=job.id, status=job.status, progress=job.progress, error_code=job.error_code,
                  error_message=job.error_message, attempts=job.attempts, created_at=job.created_at,
                  started_at=job.started_at, finished_at=job.finished_at)


def job_response(job: Job, replayed: bool) -> Response[JobOut]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(job_out(job), status_code=HTTP_202_ACCEPTED, headers=headers)


def replay(job: Job, meeting_id: uuid.UUID, digest: str) -> Response[JobOut]:
    """The job a replayed ``Idempotency-Key`` names, if the request is the same; else 409."""
    if job.meeting_id != meeting_id or job.request_hash != digest:
        raise APIError("idempotency_conflict", "this Idempotency-Key was used with a different request")
    return job_response(job, replayed=True)
