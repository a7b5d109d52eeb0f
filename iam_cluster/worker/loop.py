"""The job worker: claim a job, fetch its audio, run it through the runner, record how it ended."""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid

import psycopg
from psycopg.rows import dict_row

from iam_cluster.db.queries import QUERIES
from iam_cluster.errors import MediaError, OptionsError
from iam_cluster.insights import service
from iam_cluster.pipeline.types import ProgressHook, Transcript, parse_options
from iam_cluster.queue import Job, Jobs, wait_for_jobs
from iam_cluster.runner import Runner, make_runner
from iam_cluster.settings import Settings, get_settings
from iam_cluster.storage import ObjectNotFound, Storage, make_storage
from iam_cluster.worker.events import EventSink
from iam_cluster.worker.heartbeat import Heartbeat, JobCancelled, LeaseLost
from iam_cluster.worker.results import JobEnd

log = logging.getLogger(__name__)

#: Seconds an idle worker waits for a notification before polling the queue anyway.
POLL_SECONDS = 5.0
#: Longest pause between reconnection attempts while the database is unreachable.
MAX_BACKOFF_SECONDS = 30.0


class Worker:
    """Claims queued jobs one at a time and runs them to a terminal state or a retry.

    Args:
        settings: Database, storage, lease and runner settings.
        runner: How transcriptions run; default ``make_runner(settings)``, built on first use.
        storage: Where the meetings' audio lives; default ``make_storage(settings.storage)``.
        worker_id: This worker's lease owner name; default host, pid and a random suffix.
        deliver_webhooks: Run the webhook deliverer beside the job loop in ``run``.
    """

    def __init__(self, settings: Settings, runner: Runner | None = None, storage: Storage | None = None,
                 worker_id: str | None = None, deliver_webhooks: bool = True) -> None:
        self.settings = settings
        self.deliver_webhooks = deliver_webhooks
        self.database_url = settings.database.require_url()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runner = runner
        self.storage = storage or make_storage(settings.storage)
        self.events = EventSink(settings.redis)
        self._conn: psycopg.Connection | None = None

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection to the queue's database."""
        return psycopg.connect(self.database_url, autocommit=True)

    @property
    def conn(self) -> psycopg.Connection:
        """The worker's own connection for claims and results, (re)opened when needed."""
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        return self._conn

    @functools.cached_property
    def runner(self) -> Runner:
        return self._runner or make_runner(self.settings)

    def close(self) -> None:
        """Closes the worker's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_once(self) -> bool:
        """Claims one runnable job and runs it.

        Returns:
            Whether a job was claimed.
        """
        job = Jobs(self.conn).claim(self.worker_id, self.settings.worker.lease_seconds)
        if job is None:
            return False
        self.process(job)
        return True

    def run(self, stop_event: threading.Event | None = None, poll_seconds: float = POLL_SECONDS) -> None:
        """Runs jobs until ``stop_event`` is set, sleeping on the job channel when the queue is empty.

        A notification wakes the worker at once; without one it polls every ``poll_seconds``
        (jobs whose backoff or a dead worker's lease ran out announce themselves to no one).
        While the database is unreachable it retries with growing pauses and logs one line per
        outage, not one per attempt.
        """
        stop_event = stop_event or threading.Event()
        listener: psycopg.Connection | None = None
        backoff = 0.0
        deliverer = self._start_deliverer(stop_event) if self.deliver_webhooks else None
        try:
            while not stop_event.is_set():
                try:
                    if listener is None or listener.closed:
                        listener = self.connect()
                        wait_for_jobs(listener, 0)  # subscribe before the claim: no wake-up is lost
                    if backoff:
                        log.warning("worker %s: database reachable again", self.worker_id)
                        backoff = 0.0
                    if self.run_once():
                        continue
                    JobEnd(self.conn, self.worker_id, self.events).reap_sync()
                    waited = 0.0
                    while waited < poll_seconds and not stop_event.is_set():
                        step = min(0.5, poll_seconds - waited)
                        if wait_for_jobs(listener, step):
                            break
                        waited += step
                except psycopg.OperationalError as exc:
                    if not backoff:
                        log.error("worker %s: database unreachable (%s); retrying with backoff",
                                  self.worker_id, str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                    self.close()
                    if listener is not None:
                        listener.close()
                    listener = None
                    backoff = min(MAX_BACKOFF_SECONDS, max(0.5, backoff * 2))
                    stop_event.wait(backoff)
                except Exception:  # keep serving; the job's lease expires and it is taken again
                    log.exception("worker %s: unexpected error", self.worker_id)
                    stop_event.wait(1.0)
        finally:
            if listener is not None:
                listener.close()
            if deliverer is not None:
                deliverer.join(timeout=30)
            self.close()

    def _start_deliverer(self, stop: threading.Event) -> threading.Thread:
        """The webhook deliverer, beside the job loop (deliveries never wait for a transcription)."""
        from iam_cluster.webhooks.deliver import Deliverer

        deliverer = Deliverer(self.database_url, self.settings.webhooks)

        def run() -> None:
            try:
                deliverer.run(stop)
            finally:
                deliverer.close()

        thread = threading.Thread(target=run, name="iam-webhooks", daemon=True)
        thread.start()
        return thread

    def process(self, job: Job) -> None:
        """Runs a claimed job and records how it ended (completed, failed, cancelled, or retried later)."""
        w = self.settings.worker
        end = JobEnd(self.conn, self.worker_id, self.events)
        if job.attempts > job.max_attempts:  # taken again after its workers died too often
            end.fail(job, "internal", f"the job was abandoned by its worker {job.attempts - 1} times")
            return
        if not end.mark_processing(job):
            return
        log.info("job %s: started (attempt %d of %d)", job.id, job.attempts, job.max_attempts)
        started = time.monotonic()
        try:
            with Heartbeat(self.connect, job.id, self.worker_id, w.lease_seconds, w.heartbeat_seconds) as hb:
                hook = self._progress_hook(job, hb)
                transcript = self.transcribe(job, hook)
                # Its own stage; an error is recorded with the meeting, never fails the job.
                insights = service.compute(transcript, self.settings.insights, hook,
                                           reraise=(LeaseLost, JobCancelled))
        except LeaseLost:
            log.warning("job %s: lease lost while running; another worker has it", job.id)
            return
        except (MediaError, OptionsError, JobCancelled) as exc:  # never worth retrying; never billed
            log.info("job %s: %s (%s)", job.id, "cancelled" if exc.code == "cancelled" else "failed", exc.code)
            end.fail(job, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("job %s failed (attempt %d of %d)", job.id, job.attempts, job.max_attempts)
            end.retry(job, w.retry_base_seconds, f"{type(exc).__name__}: {exc}")
            return
        if end.complete(job, transcript, insights) is None:
            log.warning("job %s: finished after losing its lease; results discarded", job.id)
            return
        took = time.monotonic() - started
        log.info("job %s: completed, %.1f s of audio in %.1f s (%.1fx real time), %d segments", job.id,
                 transcript.duration, took, transcript.duration / took if took else 0.0, len(transcript.segments))

    def _progress_hook(self, job: Job, hb: Heartbeat) -> ProgressHook:
        """The heartbeat's hook, also publishing throttled ``job_progress`` events to the job's owner."""

        def hook(step: str, completed: int, total: int) -> None:
            hb.hook(step, completed, total)
            self.events.progress(job, hb.progress)

        return hook

    def transcribe(self, job: Job, hook: ProgressHook) -> Transcript:
        """Fetches the meeting's audio from storage and runs it with the job's options.

        Raises:
            OptionsError: the stored options are not valid (never retried).
            MediaError: no audio was uploaded, or it cannot be decoded or is out of bounds.
        """
        options = parse_options(job.options)
        with self.conn.cursor(row_factory=dict_row) as cur:
            meeting = cur.execute(QUERIES["meeting_for_job"], {"meeting_id": job.meeting_id}).fetchone()
        key = meeting and meeting["audio_file_url"]
        label = (meeting and meeting["original_filename"]) or "the uploaded audio"
        if not key:
            raise MediaError(label, "no audio has been uploaded")
        try:
            with self.storage.local_path(key) as path:
                return self.runner.run(path, options, hook, name=label)
        except ObjectNotFound:
            raise MediaError(label, "the uploaded audio is no longer stored") from None


def run_worker(once: bool = False) -> int:
    """The ``iam-cluster worker`` command: run jobs until SIGTERM/SIGINT, or drain the queue once.

    Returns:
        The process exit status.
    """
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        logging.getLogger("iam_cluster").setLevel(logging.INFO)  # say what it does, job by job
    worker = Worker(get_settings())
    log.info("worker %s: waiting for jobs", worker.worker_id)
    if once:
        try:
            while worker.run_once():
                pass
        finally:
            worker.close()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
    return 0
