"""What a finished job writes: meeting results, status and the job's end, in one lease-guarded transaction."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from iam_cluster import events
from iam_cluster.billing import ledger

from iam_cluster.db.errors import translate_errors
from iam_cluster.db.queries import QUERIES
from iam_cluster.insights import store as insights_store
from iam_cluster.insights.service import Outcome as InsightsOutcome
from iam_cluster.pipeline.types import Transcript
from iam_cluster.queue import jobs
from iam_cluster.queue.jobs import Job
from iam_cluster.settings import RedisSettings

log = logging.getLogger(__name__)
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
    """Hook point for billing (usage records) and notifications.

    It runs inside the transaction that ends the job, after the lease check passed, so whatever
    it writes is written exactly once, together with the results. Failed jobs never bill.

    It records a ``notifications`` row for the job's owner; the live events (``job_completed`` or
    ``job_failed``, then ``notification``) are only queued here and published once the transaction
    has committed (see ``_job_end``), so nobody hears of a job end that was rolled back.

    Args:
        conn: The connection, inside the job's final transaction.
        job: The job as it is now stored (``completed`` or ``failed``).
        outcome: What happened.
    """
    if outcome.status == "completed":
        model = outcome.transcript.model if outcome.transcript is not None else None
        ledger.record_completion(conn, user_id=job.user_id, job_id=job.id, meeting_id=job.meeting_id,
                                 audio_seconds=outcome.duration_seconds, model=model)
    else:
        ledger.release(conn, job.id)
    kind = "job_completed" if outcome.status == "completed" else "job_failed"
    payload: dict = {"meeting_id": str(job.meeting_id), "job_id": str(job.id)}
    if outcome.status == "failed":
        payload["error_code"] = outcome.code
        payload["error_message"] = outcome.message
    else:
        payload["duration_seconds"] = outcome.duration_seconds
    with translate_errors():
        row = conn.execute(
            "INSERT INTO notifications (user_id, kind, payload) VALUES (%(u)s, %(k)s, %(p)s) "
            "RETURNING id, created_at",
            {"u": job.user_id, "k": kind, "p": Jsonb(payload)},
        ).fetchone()
    notification = {"id": str(row[0]), "kind": kind, "payload": payload, "read_at": None,
                    "created_at": row[1].isoformat()}
    _PENDING.setdefault(id(conn), []).extend(
        [(job.user_id, kind, {**payload, "status": job.status}), (job.user_id, "notification", notification)])


# --- Live events (Redis pub/sub) ---------------------------------------------------------------------

#: Events queued by ``on_job_finished`` per connection, published after the commit.
_PENDING: dict[int, list[tuple[uuid.UUID, str, dict]]] = {}


class EventSink:
    """Publishes a worker's events to Redis with a sync client; a Redis failure is logged, never raised."""

    #: Least seconds between two ``job_progress`` events of one job.
    PROGRESS_INTERVAL = 1.0

    def __init__(self, redis_settings: RedisSettings) -> None:
        self.settings = redis_settings
        self._client = None
        self._lock = threading.Lock()
        self._last_progress: dict[uuid.UUID, tuple[float, float]] = {}

    def _redis(self):
        if self._client is None:
            from redis import Redis

            self._client = Redis.from_url(self.settings.url, socket_connect_timeout=1.0, socket_timeout=1.0)
        return self._client

    def publish(self, user_id: uuid.UUID, event_type: str, data: dict) -> None:
        try:
            with self._lock:
                events.publish_sync(self._redis(), self.settings.key_prefix, user_id, event_type, data)
        except Exception:  # events are a convenience; the job's record is in PostgreSQL
            log.warning("could not publish %s for user %s", event_type, user_id, exc_info=True)

    def progress(self, job: Job, progress: float) -> None:
        """A ``job_progress`` event, at most one per ``PROGRESS_INTERVAL`` and only when it moved."""
        now = time.monotonic()
        last_t, last_p = self._last_progress.get(job.id, (0.0, -1.0))
        if progress <= last_p or now - last_t < self.PROGRESS_INTERVAL:
            return
        if len(self._last_progress) > 1000:
            self._last_progress.clear()
        self._last_progress[job.id] = (now, progress)
        self.publish(job.user_id, "job_progress",
                     {"job_id": str(job.id), "meeting_id": str(job.meeting_id), "progress": round(progress, 4)})


#: Sinks by worker id (``register_events``); other workers use the environment's Redis settings.
_SINKS: dict[str, EventSink] = {}


def register_events(worker_id: str, redis_settings: RedisSettings) -> EventSink:
    """The event sink through which the jobs ended by ``worker_id`` publish."""
    sink = _SINKS[worker_id] = EventSink(redis_settings)
    return sink


def event_sink(worker_id: str) -> EventSink:
    sink = _SINKS.get(worker_id)
    if sink is None:
        from iam_cluster.settings import get_settings

        sink = _SINKS[worker_id] = EventSink(get_settings().redis)
    return sink


@contextmanager
def _job_end(conn: psycopg.Connection, worker_id: str) -> Iterator[None]:
    """The job-ending transaction; the events its ``on_job_finished`` queued go out after the commit."""
    _PENDING.pop(id(conn), None)
    try:
        with conn.transaction():
            yield
    except BaseException:
        _PENDING.pop(id(conn), None)
        raise
    pending = _PENDING.pop(id(conn), None)
    if pending:
        sink = event_sink(worker_id)
        for user_id, event_type, data in pending:
            sink.publish(user_id, event_type, data)


def mark_processing(conn: psycopg.Connection, job: Job, worker_id: str) -> bool:
    """Sets the meeting's status to ``processing``; False when ``worker_id`` no longer holds the job."""
    params = {"meeting_id": job.meeting_id, "job_id": job.id, "worker": worker_id}
    with translate_errors():
        return conn.execute(QUERIES["mark_meeting_processing"], params).rowcount == 1


def write_completion(conn: psycopg.Connection, job: Job, worker_id: str, transcript: Transcript,
                     insights: InsightsOutcome | None = None) -> Job | None:
    """Writes the transcript (and its insights, if any) into the meeting and completes the job, in one transaction.

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
    with _job_end(conn, worker_id):
        done = jobs.complete(conn, job.id, worker_id)
        if done is None:
            return None
        with translate_errors():
            conn.execute(QUERIES["write_meeting_results"], params)
        if insights is not None:
            insights_store.save(conn, job.meeting_id, insights)
        on_job_finished(conn, done, Outcome(status="completed", duration_seconds=transcript.duration,
                                            transcript=transcript))
    return done


def write_failure(conn: psycopg.Connection, job: Job, worker_id: str, code: str, message: str) -> Job | None:
    """Fails the job for good (no retry) and shows the reason on the meeting, in one transaction.

    Returns:
        The failed job, or None when the lease was lost.
    """
    with _job_end(conn, worker_id):
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
    with _job_end(conn, worker_id):
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
