"""How a job ends: its results, usage, notification and state, in one lease-guarded transaction.

``JobEnd`` runs the job manager's ending transition first (guarded by the lease: when another
worker took the job over, nothing at all is written), then writes what goes with it. Live events
are collected during the transaction and published only after it committed, so nobody hears of a
job end that was rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgspec
import psycopg
import psycopg.rows
from psycopg.types.json import Jsonb

from iam_cluster import events
from iam_cluster.billing import ledger
from iam_cluster.billing.plans import billable_seconds
from iam_cluster.db.errors import translate_errors
from iam_cluster.db.queries import QUERIES
from iam_cluster.insights import store as insights_store
from iam_cluster.insights.service import Outcome as InsightsOutcome
from iam_cluster.pipeline.types import Transcript
from iam_cluster.queue import COMPLETED, FAILED, Job, Jobs
from iam_cluster.webhooks import outbox
from iam_cluster.worker.events import EventSink

#: ``meetings.provider_used`` for transcripts made by this service.
PROVIDER = "iam-cluster"
Event = tuple[uuid.UUID, str, dict]


class JobEnd:
    """Ends jobs held by ``worker_id`` on ``conn`` (autocommit), publishing events through ``events``."""

    def __init__(self, conn: psycopg.Connection, worker_id: str, events: EventSink) -> None:
        self.conn = conn
        self.worker_id = worker_id
        self.events = events
        self.jobs = Jobs(conn)

    def mark_processing(self, job: Job) -> bool:
        """Set the meeting's status to ``processing``; False when this worker no longer holds the job."""
        params = {"meeting_id": job.meeting_id, "job_id": job.id, "worker": self.worker_id}
        with translate_errors():
            return self.conn.execute(QUERIES["mark_meeting_processing"], params).rowcount == 1

    def complete(self, job: Job, transcript: Transcript, insights: InsightsOutcome | None = None) -> Job | None:
        """Store the whole transcript (and its insights, if any) with the meeting, bill it and complete the job.

        A ``sync`` job (one API request, no meeting) is billed and completed only: its caller has
        the transcript.

        Returns:
            The completed job, or None when the lease was lost (nothing written).
        """
        params = {
            "meeting_id": job.meeting_id, "text": transcript.text,
            "transcript": Jsonb(msgspec.to_builtins(transcript)), "language": transcript.language,
            "confidence": transcript.confidence, "model": transcript.model, "provider": PROVIDER,
            "duration": transcript.duration,
        }
        with self._ending() as pending:
            done = self.jobs.complete(job.id, self.worker_id)
            if done is None:
                return None
            ledger.record_completion(self.conn, user_id=job.user_id, job_id=job.id, meeting_id=job.meeting_id,
                                     audio_seconds=billable_seconds(transcript), model=transcript.model)
            if done.kind == "meeting":
                with translate_errors():
                    self.conn.execute(QUERIES["write_meeting_results"], params)
                if insights is not None:
                    insights_store.save(self.conn, job.meeting_id, insights)
                self._notify(done, pending, {"duration_seconds": transcript.duration})
        return done

    def fail(self, job: Job, code: str, message: str) -> Job | None:
        """Fail the job for good (``cancelled`` ends it as cancelled), bill nothing, show the reason.

        Returns:
            The job as now stored, or None when the lease was lost.
        """
        return self._end(lambda: self.jobs.fail(job.id, self.worker_id, code, message), message)

    def retry(self, job: Job, retry_base_seconds: float, message: str, code: str = "internal") -> Job | None:
        """Requeue the job with backoff, or fail it once its attempts are spent.

        Returns:
            The job as now stored (``queued`` or ``failed``), or None when the lease was lost.
        """
        return self._end(lambda: self.jobs.retry_later(job.id, self.worker_id, retry_base_seconds, message, code),
                         message)

    def _end(self, transition: Callable[[], Job | None], message: str) -> Job | None:
        with self._ending() as pending:
            after = transition()
            if after is None:
                return None
            if after.terminal:
                ledger.release(self.conn, after.id)
            if after.kind == "meeting":
                self._meeting_status(after, after.status, message)
                if after.terminal:
                    self._notify(after, pending, {"error_code": after.error_code, "error_message": message})
        return after

    def reap_sync(self) -> int:
        """Fail the synchronous jobs whose API process went away and free their reservations."""
        with self.conn.transaction():
            reaped = self.jobs.reap_sync()
            for job in reaped:
                ledger.release(self.conn, job.id)
        return len(reaped)

    @contextmanager
    def _ending(self) -> Iterator[list[Event]]:
        pending: list[Event] = []
        with self.conn.transaction():
            yield pending
        for user_id, event_type, data in pending:
            self.events.publish(user_id, event_type, data)

    def _notify(self, job: Job, pending: list[Event], details: dict) -> None:
        """A notification row for the job's owner and its webhook deliveries; live events go out
        after the commit."""
        outbox.record(self.conn, job.user_id, *outbox.job_event(job), callback_url=job.callback_url)
        kind = {COMPLETED: "job_completed", FAILED: "job_failed"}.get(job.status, "job_cancelled")
        payload = {"meeting_id": str(job.meeting_id), "job_id": str(job.id), **details}
        with translate_errors():
            row = self.conn.execute(
                "INSERT INTO notifications (user_id, kind, payload) VALUES (%(u)s, %(k)s, %(p)s) "
                "RETURNING id, created_at", {"u": job.user_id, "k": kind, "p": Jsonb(payload)},
            ).fetchone()
        notification = {"id": str(row[0]), "kind": kind, "payload": payload, "read_at": None,
                        "created_at": row[1].isoformat()}
        pending.extend([(job.user_id, kind, {**payload, "status": job.status}),
                        (job.user_id, "notification", notification)])
        self._batch_end(job, pending)

    def _batch_end(self, job: Job, pending: list[Event]) -> None:
        """``batch_completed`` (live event) and ``batch.completed`` (webhook, in this transaction) once the
        job's batch (if it has one) has no job left to run."""
        with translate_errors():
            if self.conn.execute(QUERIES["batch_lock_of_job"], {"job_id": job.id}).fetchone() is None:
                return
            with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
                finished = cur.execute(QUERIES["batch_finish_if_done"], {"job_id": job.id}).fetchone()
                if finished is None:
                    return
                batch = cur.execute(QUERIES["batch_get"], {"id": finished["id"], "user_id": job.user_id}).fetchone()
        outbox.record(self.conn, job.user_id, *outbox.batch_event(batch))
        pending.append((job.user_id, "batch_completed", events.batch_completed(finished)))

    def _meeting_status(self, job: Job, status: str, error: str | None) -> None:
        with translate_errors():
            self.conn.execute(QUERIES["write_meeting_status"],
                              {"meeting_id": job.meeting_id, "status": status, "error": error})
