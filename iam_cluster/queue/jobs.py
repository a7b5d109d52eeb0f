"""Job rows and their transitions (enqueue, SKIP LOCKED claim, lease, retry) and the pg_notify wake-up."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from iam_cluster.db.errors import Conflict, translate_errors
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES
from iam_cluster.observability import context

#: The channel ``enqueue`` notifies and workers LISTEN on; the payload is the job id.
CHANNEL = "iam_jobs"
#: Job states; the last two are terminal and never change again.
QUEUED, PROCESSING, COMPLETED, FAILED = "queued", "processing", "completed", "failed"
TERMINAL = frozenset({COMPLETED, FAILED})
#: The failure codes a job may carry (MediaError's codes plus the service's own).
FAILURE_CODES = frozenset({
    "unsupported_media", "empty_media", "truncated_media", "too_short", "too_long",
    "quota_exceeded", "internal",
})


class Job(msgspec.Struct, kw_only=True):
    """A row of ``jobs``."""

    id: uuid.UUID
    user_id: uuid.UUID
    meeting_id: uuid.UUID
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
    #: Id of the API request that queued the job (its log lines and the worker's share it).
    request_id: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job is completed or failed (and so will never change)."""
        return self.status in TERMINAL


def _one(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> Job | None:
    with translate_errors(), conn.cursor(row_factory=struct_row(Job)) as cur:
        return cur.execute(QUERIES[name], params).fetchone()


def enqueue(
    conn: psycopg.Connection, user_id: uuid.UUID, meeting_id: uuid.UUID, options: dict[str, Any],
    idempotency_key: str | None = None, request_hash: str | None = None, max_attempts: int | None = None,
) -> Job:
    """Queues a transcription job and wakes the workers (``pg_notify``), in one transaction.

    The meeting's ``processing_status`` becomes ``queued`` in the same transaction. A replay with
    the same ``idempotency_key`` and ``request_hash`` returns the existing job and notifies no one.

    Args:
        conn: A connection; the work runs in ``conn.transaction()`` (a savepoint inside an outer one).
        user_id: The job's owner.
        meeting_id: The meeting whose stored audio is transcribed.
        options: ``TranscribeOptions`` fields, stored as JSONB.
        idempotency_key: The client's ``Idempotency-Key``, if any (then ``request_hash`` is required).
        request_hash: A digest of the request body, to detect a key reused with another body.
        max_attempts: Attempts before the job fails for good; default the worker settings'.

    The request id bound in the log context (``observability.context``) is stored with the job, so
    the worker's lines about it carry the id of the request that queued it.

    Raises:
        Conflict: the key was used before with a different request body.
        InvalidReference: the user or meeting does not exist.
    """
    if max_attempts is None:
        from iam_cluster.settings import get_settings

        max_attempts = get_settings().worker.max_attempts
    params = dict(user_id=user_id, meeting_id=meeting_id, options=Jsonb(options),
                  idempotency_key=idempotency_key, request_hash=request_hash, max_attempts=max_attempts,
                  request_id=context.get("request_id"))
    with conn.transaction():
        job = _one(conn, "insert_job", params)
        if job is None:  # the idempotency key exists already: a replay or a conflict
            existing = _one(conn, "get_job_by_idempotency_key", params)
            if existing is None or existing.request_hash != request_hash:
                raise Conflict("this Idempotency-Key was used with a different request",
                               constraint="jobs_user_id_idempotency_key_key")
            return existing
        with translate_errors():
            conn.execute(QUERIES["mark_meeting_queued"], params)
            conn.execute(QUERIES["notify_job"], {"id": str(job.id)})
    return job


def get_job(conn: psycopg.Connection, job_id: uuid.UUID) -> Job | None:
    """The job with this id, or None."""
    return _one(conn, "get_job", {"id": job_id})


def claim(conn: psycopg.Connection, worker_id: str, lease_seconds: float) -> Job | None:
    """Takes the oldest runnable job for ``worker_id`` under a lease of ``lease_seconds``.

    Runnable means queued with ``run_after`` passed, or processing under an expired lease (its
    worker died). Concurrent claimers never get the same job: rows are locked ``FOR UPDATE SKIP
    LOCKED``. The claim increments ``attempts``.

    Returns:
        The claimed job (status ``processing``), or None when nothing is runnable.
    """
    with conn.transaction():
        return _one(conn, "claim_job", {"worker": worker_id, "lease_seconds": float(lease_seconds)})


def heartbeat(conn: psycopg.Connection, job_id: uuid.UUID, worker_id: str, lease_seconds: float,
              progress: float | None = None) -> bool:
    """Extends the lease by ``lease_seconds`` from now and records ``progress`` (0..1, never backwards).

    Returns:
        False when the worker no longer owns the job (lease taken over, or job finished).
    """
    params = {"id": job_id, "worker": worker_id, "lease_seconds": float(lease_seconds),
              "progress": None if progress is None else min(1.0, max(0.0, float(progress)))}
    with translate_errors():
        return conn.execute(QUERIES["heartbeat_job"], params).fetchone() is not None


def complete(conn: psycopg.Connection, job_id: uuid.UUID, worker_id: str) -> Job | None:
    """Marks the job completed if ``worker_id`` still holds it.

    Returns:
        The completed job, or None when the lease was lost or the job is already terminal.
    """
    return _one(conn, "complete_job", {"id": job_id, "worker": worker_id})


def fail(conn: psycopg.Connection, job_id: uuid.UUID, worker_id: str, code: str, message: str) -> Job | None:
    """Marks the job failed for good with ``code`` and a human-readable ``message``.

    Returns:
        The failed job, or None when the lease was lost or the job is already terminal.

    Raises:
        ValueError: ``code`` is not one of ``FAILURE_CODES``.
    """
    if code not in FAILURE_CODES:
        raise ValueError(f"unknown job failure code {code!r}")
    return _one(conn, "fail_job", {"id": job_id, "worker": worker_id, "code": code, "message": message})


def retry_later(conn: psycopg.Connection, job_id: uuid.UUID, worker_id: str, retry_base_seconds: float,
                message: str, code: str = "internal") -> Job | None:
    """Requeues the job after ``retry_base_seconds * 2**(attempts-1)``, or fails it when attempts are spent.

    The reason (``code``, ``message``) is kept on the row either way.

    Returns:
        The job as now stored (``queued`` or ``failed``), or None when the lease was lost.
    """
    if code not in FAILURE_CODES:
        raise ValueError(f"unknown job failure code {code!r}")
    params = {"id": job_id, "worker": worker_id, "retry_base": float(retry_base_seconds),
              "code": code, "message": message}
    return _one(conn, "retry_job", params)


def backoff_seconds(attempts: int, retry_base_seconds: float) -> float:
    """The delay before the next try after ``attempts`` tries (what ``retry_later`` applies)."""
    return retry_base_seconds * 2 ** max(0, attempts - 1)


def listen(conn: psycopg.Connection) -> None:
    """Subscribes an autocommit connection to the job channel (idempotent).

    Notifications that arrive between ``listen`` and ``wait_for_jobs`` are kept by the
    connection and returned by the next wait, so claim-then-wait loses no wake-up.
    """
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))


def wait_for_jobs(conn: psycopg.Connection, timeout: float) -> list[str]:
    """Blocks up to ``timeout`` seconds until a job is enqueued.

    Args:
        conn: An autocommit connection used for nothing else while waiting; it is subscribed
            (``LISTEN iam_jobs``) on first use.
        timeout: Longest wait in seconds; the caller polls anyway after it (a missed or
            dropped notification then costs at most one timeout).

    Returns:
        The ids (as text) of the jobs announced; empty after a timeout.
    """
    listen(conn)
    ids = []
    for note in conn.notifies(timeout=timeout, stop_after=1):
        if note.channel == CHANNEL:
            ids.append(note.payload)
    return ids
