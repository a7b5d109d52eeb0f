"""Durable job queue in PostgreSQL: SKIP LOCKED claims, leases with heartbeat, bounded retries, pg_notify."""

from iam_cluster.queue.jobs import (
    CHANNEL,
    COMPLETED,
    FAILED,
    FAILURE_CODES,
    PROCESSING,
    QUEUED,
    TERMINAL,
    Job,
    backoff_seconds,
    claim,
    complete,
    enqueue,
    fail,
    get_job,
    heartbeat,
    listen,
    retry_later,
    wait_for_jobs,
)

__all__ = [
    "CHANNEL", "COMPLETED", "FAILED", "FAILURE_CODES", "PROCESSING", "QUEUED", "TERMINAL", "Job",
    "backoff_seconds", "claim", "complete", "enqueue", "fail", "get_job", "heartbeat", "listen",
    "retry_later", "wait_for_jobs",
]
