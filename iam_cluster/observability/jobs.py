"""A job's life as log lines and metrics: queued by the API, claimed, run and ended by a worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from iam_cluster.observability import context
from iam_cluster.observability.logging import get_logger

if TYPE_CHECKING:
    from iam_cluster.queue.jobs import Job

log = get_logger("iam_cluster.jobs")

JOBS_CLAIMED = Counter("iam_worker_jobs_claimed", "Jobs claimed by this worker (first runs and retries)")
JOBS_COMPLETED = Counter("iam_worker_jobs_completed", "Jobs this worker completed")
JOBS_FAILED = Counter("iam_worker_jobs_failed", "Jobs that failed for good, by failure code", ["code"])
JOBS_CANCELLED = Counter("iam_worker_jobs_cancelled", "Jobs cancelled by their owner while this worker ran them")
JOBS_RETRIED = Counter("iam_worker_jobs_retried", "Job attempts that failed and were queued again", ["code"])
JOBS_IN_PROGRESS = Gauge("iam_worker_jobs_in_progress", "Jobs this worker is running now")
JOB_DURATION = Histogram(
    "iam_worker_job_duration_seconds", "Wall time from claim to the job's recorded end, by outcome",
    ["outcome"], buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
AUDIO_SECONDS = Counter("iam_worker_audio_seconds", "Seconds of audio in completed jobs")
REAL_TIME_FACTOR = Histogram(
    "iam_worker_real_time_factor", "Job wall seconds per second of audio (lower is faster)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 5),
)
LEASE_RENEWALS = Counter("iam_worker_lease_renewals", "Job leases extended by a heartbeat")
LEASE_EXPIRIES = Counter("iam_worker_lease_expiries",
                         "Jobs whose lease ran out under this worker (taken over by another)")
WEBHOOK_DELIVERIES = Counter("iam_webhook_deliveries", "Webhook delivery attempts by event and outcome "
                             "(delivered; retry: failed, tried again later; failed: given up)", ["event", "outcome"])


def webhook_attempted(event: str, outcome: str) -> None:
    """The webhook deliverer's ``on_result``: one attempt at posting ``event`` ended with ``outcome``."""
    WEBHOOK_DELIVERIES.labels(event=event, outcome=outcome).inc()


def job_queued(job_id: uuid.UUID, meeting_id: uuid.UUID, options: dict[str, Any] | None = None) -> None:
    """The API's line for a new job; the job id joins the request's context."""
    context.update(job_id=str(job_id))
    log.info("job queued", meeting_id=str(meeting_id), options=options or {})


class JobRun:
    """What the worker tells ``observe_job`` while a job runs."""

    def __init__(self) -> None:
        self.audio_seconds = 0.0
        self.segments = 0
        self.ended = False
        self.stored: Job | None = None

    def transcribed(self, duration: float, segments: int = 0) -> None:
        """The transcript is ready: ``duration`` seconds of audio in ``segments`` segments."""
        self.audio_seconds, self.segments = float(duration), segments

    def finished(self, stored: Job | None) -> Job | None:
        """The job as stored after the worker's last write (None: the lease was lost); returns it."""
        self.ended, self.stored = True, stored
        return stored


@contextmanager
def observe_job(job: Job, worker_id: str) -> Iterator[JobRun]:
    """Binds the job's ids to every log line of its run, and counts, times and logs how it ended."""
    run = JobRun()
    with context.scope(job_id=str(job.id), user_id=str(job.user_id), request_id=job.request_id):
        JOBS_CLAIMED.inc()
        JOBS_IN_PROGRESS.inc()
        log.info("job claimed", meeting_id=str(job.meeting_id), attempt=job.attempts,
                 max_attempts=job.max_attempts, worker_id=worker_id)
        start = time.perf_counter()
        try:
            yield run
        finally:
            JOBS_IN_PROGRESS.dec()
            wall = time.perf_counter() - start
            if run.ended:
                _record_end(run.stored, run, wall)
            else:  # an error escaped the worker (logged by its loop); the lease decides what follows
                JOB_DURATION.labels(outcome="interrupted").observe(wall)


def _record_end(stored: Job | None, run: JobRun, wall: float) -> None:
    if stored is None:
        outcome = "lease_lost"
        LEASE_EXPIRIES.inc()
        log.warning("job lease lost; another worker has it", duration_s=round(wall, 3))
    elif stored.status == "completed":
        outcome = "completed"
        JOBS_COMPLETED.inc()
        AUDIO_SECONDS.inc(run.audio_seconds)
        rtf = wall / run.audio_seconds if run.audio_seconds > 0 else None
        if rtf is not None:
            REAL_TIME_FACTOR.observe(rtf)
        log.info("job completed", duration_s=round(wall, 3), audio_s=round(run.audio_seconds, 3),
                 rtf=None if rtf is None else round(rtf, 4), segments=run.segments)
    elif stored.status == "cancelled":
        outcome = "cancelled"
        JOBS_CANCELLED.inc()
        log.info("job cancelled", duration_s=round(wall, 3))
    elif stored.status == "failed":
        outcome = "failed"
        JOBS_FAILED.labels(code=stored.error_code or "internal").inc()
        log.warning("job failed", code=stored.error_code, reason=stored.error_message, duration_s=round(wall, 3))
    else:
        outcome = "retried"
        JOBS_RETRIED.labels(code=stored.error_code or "internal").inc()
        log.warning("job attempt failed; queued again", code=stored.error_code, reason=stored.error_message,
                    run_after=stored.run_after.isoformat(), duration_s=round(wall, 3))
    JOB_DURATION.labels(outcome=outcome).observe(wall)
