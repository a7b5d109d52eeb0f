"""The worker's live events (Redis pub/sub): job progress while it runs, job ends after commit."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from iam_cluster import events
from iam_cluster.queue import Job
from iam_cluster.settings import RedisSettings

log = logging.getLogger(__name__)


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
