"""The job manager: every job transition (enqueue, claim, heartbeat, complete, fail, retry, cancel).

Each transition is written once, as a generator that yields ``(query name, parameters)`` and is
sent back the row each query returns. ``Jobs`` runs them on a blocking connection (the worker,
tests) and ``AsyncJobs`` on an async one (the API), so both sides share one implementation and
one set of SQL (``db/queries/jobs.sql``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Generator
from typing import Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from iam_cluster.db.errors import Conflict, translate_errors
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES

#: The channel ``enqueue`` notifies and workers LISTEN on; the payload is the job id.
CHANNEL = "iam_jobs"
#: Job states; the last three are terminal and never change again.
QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED = "queued", "processing", "completed", "failed", "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
#: The failure codes a job may carry (MediaError's codes plus the service's own).
FAILURE_CODES = frozenset({
    "unsupported_media", "empty_media", "truncated_media", "too_short", "too_long",
    "invalid_options", "quota_exceeded", "cancelled", "internal",
})


class Job(msgspec.Struct, kw_only=True):
    """A row of ``jobs``."""

    id: uuid.UUID
    user_id: uuid.UUID
    #: The meeting whose audio a ``meeting`` job transcribes; None for a ``sync`` job (one request).
    meeting_id: uuid.UUID | None = None
    kind: str = "meeting"
    status: str
    options: dict[str, Any] = {}
    idempotency_key: str | None = None
    request_hash: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    run_after: dt.datetime
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    progress: float = 0.0
    cancel_requested_at: dt.datetime | None = None
    #: Where ``job.completed`` / ``job.failed`` are also posted (besides the account's endpoints).
    callback_url: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (and so will never change)."""
        return self.status in TERMINAL


class Enqueued(msgspec.Struct):
    """What ``enqueue`` did: the job, and whether it already existed (a replayed request)."""

    job: Job
    replayed: bool


Steps = Generator[tuple[str, dict[str, Any]], Job | None, Any]


# --- the transitions, written once --------------------------------------------------------------

def _enqueue(user_id: uuid.UUID, meeting_id: uuid.UUID, options: dict[str, Any], idempotency_key: str | None,
             request_hash: str | None, max_attempts: int, callback_url: str | None = None) -> Steps:
    if idempotency_key is not None and request_hash is None:
        raise ValueError("an idempotency key needs the request's hash")
    params = dict(user_id=user_id, meeting_id=meeting_id, options=Jsonb(options), channel=CHANNEL,
                  idempotency_key=idempotency_key, request_hash=request_hash, max_attempts=max_attempts,
                  callback_url=callback_url)
    job = yield "enqueue_job", params
    if job is not None:
        return Enqueued(job, replayed=False)
    existing = yield "get_job_by_idempotency_key", params  # the key was used before
    if existing is None or existing.request_hash != request_hash or existing.meeting_id != meeting_id:
        raise Conflict("this Idempotency-Key was used with a different request",
                       constraint="jobs_user_id_idempotency_key_key")
    return Enqueued(existing, replayed=True)


def _one(name: str, **params: Any) -> Steps:
    return (yield name, params)


def _ending(name: str, job_id: uuid.UUID, worker_id: str, code: str | None = None, **params: Any) -> Steps:
    if code is not None and code not in FAILURE_CODES:
        raise ValueError(f"unknown job failure code {code!r}")
    return (yield name, dict(id=job_id, worker=worker_id, code=code, **params))


# --- the drivers ---------------------------------------------------------------------------------

class Jobs:
    """Job transitions on a blocking connection (autocommit or inside a transaction)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def _run(self, steps: Steps) -> Any:
        with self.conn.transaction(), self.conn.cursor(row_factory=struct_row(Job)) as cur:
            try:
                name, params = next(steps)
                while True:
                    with translate_errors():
                        row = cur.execute(QUERIES[name], params).fetchone()
                    name, params = steps.send(row)
            except StopIteration as done:
                return done.value

    def enqueue(self, user_id: uuid.UUID, meeting_id: uuid.UUID, options: dict[str, Any], *,
                max_attempts: int, idempotency_key: str | None = None, request_hash: str | None = None,
                callback_url: str | None = None) -> Enqueued:
        """Queue a transcription job, mark its meeting queued and wake the workers (at commit).

        A replay with the same ``idempotency_key`` and ``request_hash`` returns the existing job.

        Raises:
            Conflict: the key was used before with a different request.
        """
        return self._run(_enqueue(user_id, meeting_id, options, idempotency_key, request_hash, max_attempts,
                                  callback_url))

    def reap_sync(self) -> list[Job]:
        """Fail the ``sync`` jobs whose API process went away (lease expired); returns them."""
        with self.conn.transaction(), self.conn.cursor(row_factory=struct_row(Job)) as cur:
            with translate_errors():
                return cur.execute(QUERIES["reap_sync_jobs"], {}).fetchall()

    def get(self, job_id: uuid.UUID) -> Job | None:
        return self._run(_one("get_job", id=job_id))

    def claim(self, worker_id: str, lease_seconds: float) -> Job | None:
        """Take the oldest runnable job (queued, or processing under an expired lease) under a lease.

        Concurrent claimers never get the same job (``FOR UPDATE SKIP LOCKED``); ``attempts`` grows.
        """
        return self._run(_one("claim_job", worker=worker_id, lease_seconds=float(lease_seconds)))

    def heartbeat(self, job_id: uuid.UUID, worker_id: str, lease_seconds: float,
                  progress: float | None = None) -> Job | None:
        """Extend the lease and record progress (0..1, never backwards).

        Returns:
            The job (``cancel_requested_at`` says whether its owner cancelled it), or None when
            this worker no longer holds it.
        """
        progress = None if progress is None else min(1.0, max(0.0, float(progress)))
        return self._run(_one("heartbeat_job", id=job_id, worker=worker_id,
                              lease_seconds=float(lease_seconds), progress=progress))

    def complete(self, job_id: uuid.UUID, worker_id: str) -> Job | None:
        """Completed, if ``worker_id`` still holds it; None when the lease was lost."""
        return self._run(_ending("complete_job", job_id, worker_id))

    def fail(self, job_id: uuid.UUID, worker_id: str, code: str, message: str) -> Job | None:
        """Failed for good with ``code`` (``cancelled`` ends it as cancelled); None when the lease was lost."""
        return self._run(_ending("fail_job", job_id, worker_id, code, message=message))

    def retry_later(self, job_id: uuid.UUID, worker_id: str, retry_base_seconds: float, message: str,
                    code: str = "internal") -> Job | None:
        """Requeued after ``retry_base_seconds * 2**(attempts-1)``, or failed once attempts are spent."""
        return self._run(_ending("retry_job", job_id, worker_id, code, message=message,
                                 retry_base=float(retry_base_seconds)))


class AsyncJobs:
    """Job transitions on an async connection: the API's side (enqueue, look-ups, cancel)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def _run(self, steps: Steps) -> Any:
        async with self.conn.transaction(), self.conn.cursor(row_factory=struct_row(Job)) as cur:
            try:
                name, params = next(steps)
                while True:
                    with translate_errors():
                        await cur.execute(QUERIES[name], params)
                    name, params = steps.send(await cur.fetchone())
            except StopIteration as done:
                return done.value

    async def enqueue(self, user_id: uuid.UUID, meeting_id: uuid.UUID, options: dict[str, Any], *,
                      max_attempts: int, idempotency_key: str | None = None, request_hash: str | None = None,
                      callback_url: str | None = None) -> Enqueued:
        """See ``Jobs.enqueue``."""
        return await self._run(_enqueue(user_id, meeting_id, options, idempotency_key, request_hash, max_attempts,
                                        callback_url))

    async def start_sync(self, user_id: uuid.UUID, options: dict[str, Any], owner: str, lease_seconds: float) -> Job:
        """A ``sync`` job, processing at once under ``owner`` (the API process serving one request).

        Workers never claim it; if its owner dies, ``Jobs.reap_sync`` fails it once the lease expired.
        """
        return await self._run(_one("start_sync_job", user_id=user_id, options=Jsonb(options), worker=owner,
                                    lease_seconds=float(lease_seconds)))

    async def list(self, user_id: uuid.UUID, *, status: str | None = None, meeting_id: uuid.UUID | None = None,
                   before: tuple[dt.datetime, uuid.UUID] | None = None, limit: int = 20) -> list[Job]:
        """The caller's jobs, newest first, filtered; ``before`` is the (created_at, id) of the last seen."""
        params = dict(user_id=user_id, status=status, meeting_id=meeting_id, limit=limit,
                      before_at=before[0] if before else None, before_id=before[1] if before else None)
        async with self.conn.cursor(row_factory=struct_row(Job)) as cur:
            with translate_errors():
                await cur.execute(QUERIES["list_user_jobs"], params)
            return await cur.fetchall()

    async def by_key(self, user_id: uuid.UUID, idempotency_key: str) -> Job | None:
        """The caller's job created with this ``Idempotency-Key``, if any."""
        return await self._run(_one("get_job_by_idempotency_key", user_id=user_id, idempotency_key=idempotency_key))

    async def get(self, user_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
        """The caller's job with this id, or None (another user's job is not found)."""
        return await self._run(_one("get_user_job", user_id=user_id, id=job_id))

    async def cancel(self, user_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
        """Cancel the caller's job: a queued one now, a running one at its next window.

        Returns:
            The job as now stored, or None when it is not the caller's or has already ended.
        """
        return await self._run(_one("cancel_job", user_id=user_id, id=job_id))


def listen(conn: psycopg.Connection) -> None:
    """Subscribe an autocommit connection to the job channel (idempotent).

    Notifications that arrive between ``listen`` and ``wait_for_jobs`` are kept by the
    connection and returned by the next wait, so claim-then-wait loses no wake-up.
    """
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))


def wait_for_jobs(conn: psycopg.Connection, timeout: float) -> list[str]:
    """Block up to ``timeout`` seconds until a job is enqueued.

    Args:
        conn: An autocommit connection used for nothing else while waiting; it is subscribed
            (``LISTEN``) on first use.
        timeout: Longest wait in seconds; the caller polls anyway after it (a missed or
            dropped notification then costs at most one timeout).

    Returns:
        The ids (as text) of the jobs announced; empty after a timeout.
    """
    listen(conn)
    return [note.payload for note in conn.notifies(timeout=timeout, stop_after=1) if note.channel == CHANNEL]
