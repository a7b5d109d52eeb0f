"""What a finished job writes: meeting results, status and the job's end, in one lease-guarded transaction."""

from __future__ import annotations

from typing import Literal

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from iam_cluster.db.errors import translate_errors
from iam_cluster.db.queries import QUERIES
from iam_cluster.pipeline.types import Transcript
from iam_cluster.queue import jobs
from iam_cluster.queue.jobs import Job

#: ``meetings.provider_used`` for transcripts made by this service.
PROVIDER = "iam-cluster"


class Outcome(msgspec.Struct, kw_only=True):
    """How a job ended, as handed to ``on_job_finished``."""

    status: Literal["completed", "failed"]
    #: Failure code (one of ``queue.FAILURE_CODES``) and reason; None when completed.
    code: str | None = None
    message: str | None = None
    #: Seconds of audio transcribed (what usage is metered on); 0 when failed.
    duration_seconds: float = 0.0
    transcript: Transcript | None = None


def on_job_finished(conn: psycopg.Connection, job: Job, outcome: Outcome) -> None:
    """Hook point for billing (usage records) and notifications; a no-op for now.

    It runs inside the transaction that ends the job, after the lease check passed, so whatever
    it writes is written exactly once, together with the results. Failed jobs never bill.

    Args:
        conn: The connection, inside the job's final transaction.
        job: The job as it is now stored (``completed`` or ``failed``).
        outcome: What happened.
    """


def mark_processing(conn: psycopg.Connection, job: Job, worker_id: str) -> bool:
    """Sets the meeting's status to ``processing``; False when ``worker_id`` no longer holds the job."""
    params = {"meeting_id": job.meeting_id, "job_id": job.id, "worker": worker_id}
    with translate_errors():
        return conn.execute(QUERIES["mark_meeting_processing"], params).rowcount == 1


def write_completion(conn: psycopg.Connection, job: Job, worker_id: str, transcript: Transcript) -> Job | None:
    """Writes the transcript into the meeting and completes the job, in one transaction.

    The job's transition comes first and is guarded by the lease: when another worker has taken
    the job over (or it is already terminal) nothing at all is written.

    Returns:
        The completed job, or None when the lease was lost.
    """
    params = {
        "meeting_id": job.meeting_id,
        "text": transcript.text,
        "segments": Jsonb(msgspec.to_builtins(transcript.segments)),
        "language": transcript.language,
        "confidence": transcript.confidence,
        "model": transcript.model,
        "provider": PROVIDER,
        "duration": transcript.duration,
    }
    with conn.transaction():
        done = jobs.complete(conn, job.id, worker_id)
        if done is None:
            return None
        with translate_errors():
            conn.execute(QUERIES["write_meeting_results"], params)
        on_job_finished(conn, done, Outcome(status="completed", duration_seconds=transcript.duration,
                                            transcript=transcript))
    return done


def write_failure(conn: psycopg.Connection, job: Job, worker_id: str, code: str, message: str) -> Job | None:
    """Fails the job for good (no retry) and shows the reason on the meeting, in one transaction.

    Returns:
        The failed job, or None when the lease was lost.
    """
    with conn.transaction():
        failed = jobs.fail(conn, job.id, worker_id, code, message)
        if failed is None:
            return None
        _meeting_status(conn, failed, "failed", message)
        on_job_finished(conn, failed, Outcome(status="failed", code=code, message=message))
    return failed


def write_retry(conn: psycopg.Connection, job: Job, worker_id: str, retry_base_seconds: float,
                message: str, code: str = "internal") -> Job | None:
    """Requeues the job with backoff, or fails it once its attempts are spent, in one transaction.

    Returns:
        The job as now stored (``queued`` or ``failed``), or None when the lease was lost.
    """
    with conn.transaction():
        after = jobs.retry_later(conn, job.id, worker_id, retry_base_seconds, message, code)
        if after is None:
            return None
        if after.status == jobs.FAILED:
            _meeting_status(conn, after, "failed", message)
            on_job_finished(conn, after, Outcome(status="failed", code=code, message=message))
        else:
            _meeting_status(conn, after, "queued", message)
    return after


def _meeting_status(conn: psycopg.Connection, job: Job, status: str, error: str | None) -> None:
    with translate_errors():
        conn.execute(QUERIES["write_meeting_status"],
                     {"meeting_id": job.meeting_id, "status": status, "error": error})
