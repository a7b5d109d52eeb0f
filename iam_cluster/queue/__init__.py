"""Durable job queue in PostgreSQL: one job manager (``Jobs`` / ``AsyncJobs``) owns every transition."""

from iam_cluster.queue.jobs import (
    CANCELLED,
    CHANNEL,
    COMPLETED,
    FAILED,
    FAILURE_CODES,
    PROCESSING,
    QUEUED,
    TERMINAL,
    AsyncJobs,
    Enqueued,
    Job,
    Jobs,
    listen,
    wait_for_jobs,
)

__all__ = [
    "CANCELLED", "CHANNEL", "COMPLETED", "FAILED", "FAILURE_CODES", "PROCESSING", "QUEUED", "TERMINAL",
    "AsyncJobs", "Enqueued", "Job", "Jobs", "listen", "wait_for_jobs",
]
