"""A job's lease kept alive from a background thread, pipeline progress written into ``jobs.progress``,
and a cancellation by the job's owner noticed at the next progress report."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import psycopg

from iam_cluster.errors import IAMError
from iam_cluster.queue import Jobs

log = logging.getLogger(__name__)

#: Least seconds between two progress writes made from the pipeline hook.
PROGRESS_INTERVAL = 1.0


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired) or the job ended elsewhere."""


class JobCancelled(IAMError):
    """The job was cancelled by its owner while it ran."""

    code = "cancelled"


def progress_of(step: str, completed: int, total: int) -> float:
    """Maps a pipeline hook call to a fraction of the whole job.

    ASR is most of the work (up to 0.9); later steps such as diarization fill the rest, short of 1,
    which only completion writes.
    """
    frac = min(1.0, completed / total) if total > 0 else 0.0
    if step == "asr":
        return 0.9 * frac
    return 0.9 + 0.09 * frac


class Heartbeat:
    """Extends a job's lease every ``interval`` seconds while the job runs (a context manager).

    It uses its own connection, so beats go on while the worker's connection is busy. Once a beat
    finds the lease lost, ``lost`` is set and the next ``hook`` call raises ``LeaseLost``, which
    stops the pipeline early; the final write would be refused anyway. When a beat finds that the
    owner cancelled the job, ``cancelled`` is set and the next ``hook`` call raises ``JobCancelled``.

    Args:
        connect: Opens a new autocommit connection.
        job_id: The job held.
        worker_id: Its holder.
        lease_seconds: How far each beat pushes the lease from now.
        interval: Seconds between beats (shorter than ``lease_seconds``).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection], job_id: uuid.UUID, worker_id: str,
                 lease_seconds: float, interval: float) -> None:
        self._connect = connect
        self.job_id = job_id
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.interval = max(0.05, min(interval, lease_seconds / 2))
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        self.progress = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._conn = self._connect()
        self._thread = threading.Thread(target=self._run, name=f"iam-heartbeat-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._conn is not None:
            self._conn.close()

    def beat(self, progress: float | None = None) -> bool:
        """Extends the lease now (recording ``progress`` if given); False when the lease is lost."""
        if self.lost.is_set() or self._conn is None:
            return False
        try:
            with self._lock:
                job = Jobs(self._conn).heartbeat(self.job_id, self.worker_id, self.lease_seconds, progress)
                self._last_write = time.monotonic()
        except Exception:  # a database hiccup: the next beat tries again before the lease runs out
            log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
            return True
        if job is None:
            log.warning("job %s: lease lost by %s", self.job_id, self.worker_id)
            self.lost.set()
            return False
        if job.cancel_requested_at is not None:
            self.cancelled.set()
        return True

    def hook(self, step: str, completed: int, total: int) -> None:
        """The pipeline's progress hook: records progress (throttled) and aborts if the lease is lost.

        Raises:
            LeaseLost: a beat found that this worker no longer holds the job.
            JobCancelled: a beat found that the job's owner cancelled it.
        """
        if self.lost.is_set():
            raise LeaseLost(f"job {self.job_id}")
        if self.cancelled.is_set():
            raise JobCancelled("cancelled by its owner")
        self.progress = max(self.progress, progress_of(step, completed, total))
        if time.monotonic() - self._last_write >= PROGRESS_INTERVAL or completed >= total:
            if not self.beat(self.progress):
                raise LeaseLost(f"job {self.job_id}")
            if self.cancelled.is_set():
                raise JobCancelled("cancelled by its owner")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.beat(self.progress):
                return
