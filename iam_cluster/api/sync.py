"""Synchronous transcription for one request: a ``sync`` job, metered and quota-checked like any job.

The minutes are reserved (402 past the plan) together with the job row; the runner the settings
ask for transcribes (the Serve cluster when ``IAM_SERVE_ADDRESS`` is set, so windows of concurrent
requests share batches; else the engine in this process); the job then ends through the same
``JobEnd`` a worker uses, so usage is recorded exactly once and a failure bills nothing. No database
connection is held while the audio is transcribed.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from litestar.datastructures import State

from iam_cluster.api.deps import transaction
from iam_cluster.api.errors import APIError
from iam_cluster.billing import quotas
from iam_cluster.db.rows import User
from iam_cluster.errors import IAMError, MediaError, OptionsError
from iam_cluster.pipeline.types import ProgressHook, TranscribeOptions, Transcript, no_progress
from iam_cluster.queue import AsyncJobs, Job
from iam_cluster.runner import Runner, make_runner
from iam_cluster.settings import Settings
from iam_cluster.storage import Storage
from iam_cluster.worker.events import EventSink
from iam_cluster.worker.results import JobEnd

#: This process's name on the sync jobs it runs (their lease owner).
OWNER = f"api:{socket.gethostname()}:{os.getpid()}"


def runner_of(state: State, settings: Settings) -> tuple[Runner, anyio.CapacityLimiter]:
    """The process's runner (built on first use) and how many requests may use it at once.

    In process the engine is loaded here and requests take turns; the Serve cluster takes many.
    """
    if getattr(state, "runner", None) is None:
        state.runner = make_runner(settings)
    if getattr(state, "runner_limit", None) is None:
        state.runner_limit = anyio.CapacityLimiter(64 if settings.serve.address else 1)
    return state.runner, state.runner_limit


async def transcribe_now(state: State, settings: Settings, storage: Storage, user: User, key: str, name: str,
                         duration: float | None, options: TranscribeOptions,
                         hook: ProgressHook = no_progress) -> Transcript:
    """Run one stored upload as a ``sync`` job and return its transcript.

    Raises:
        APIError: ``quota_exceeded`` (402), or the media's or options' own error (4xx).
    """
    async with transaction(state.pool) as conn:
        try:
            minutes = await quotas.check_quota(conn, user.id, duration)
        except quotas.QuotaExceeded as exc:
            raise APIError("quota_exceeded", str(exc)) from None
        job = await AsyncJobs(conn).start_sync(user.id, _builtins(options), OWNER, settings.serve.timeout_s + 60)
        await quotas.reserve(conn, user.id, job.id, minutes)
    runner, limit = runner_of(state, settings)

    def run() -> Transcript:
        with storage.local_path(key) as path:
            return runner.run(path, options, hook, name=name)

    try:
        async with limit:
            transcript = await anyio.to_thread.run_sync(run)
    except (MediaError, OptionsError) as exc:
        code, message = exc.code, exc.message
        await _end(settings, job, lambda end: end.fail(job, code, message))
        raise APIError(code, message) from None
    except BaseException as exc:
        code = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else "internal"
        message = f"{type(exc).__name__}: {exc}"[:500]
        with anyio.CancelScope(shield=True):
            await _end(settings, job, lambda end: end.fail(job, code, message))
        raise
    await _end(settings, job, lambda end: end.complete(job, transcript))
    return transcript


async def _end(settings: Settings, job: Job, how) -> None:
    """End the job as a worker would (usage, reservation), on a short blocking connection."""

    def end() -> None:
        with psycopg.connect(settings.database.url, autocommit=True) as conn:
            if how(JobEnd(conn, OWNER, EventSink(settings.redis))) is None:
                raise IAMError(f"sync job {job.id} was ended elsewhere")

    await anyio.to_thread.run_sync(end)


def _builtins(options: TranscribeOptions) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(options)


def upload_key(user_id: uuid.UUID, name: str | None) -> str:
    """Where a synchronous upload waits while it is transcribed (deleted afterwards)."""
    from iam_cluster.api.uploads import extension

    return f"users/{user_id}/sync/{uuid.uuid4().hex}.{extension(name)}"
