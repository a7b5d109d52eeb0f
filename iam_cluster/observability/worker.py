"""The worker's metrics server: ``/metrics`` (its own metrics plus the queue, read at scrape time)
and ``/healthz`` (liveness: seconds since the loop last turned or a lease was renewed)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, ThreadingWSGIServer

from iam_cluster.observability.jobs import LEASE_RENEWALS
from iam_cluster.observability.logging import get_logger

if TYPE_CHECKING:
    import psycopg

    from iam_cluster.settings import Settings

log = get_logger("iam_cluster.worker.metrics")

_last_alive = time.time()
LAST_ALIVE = Gauge("iam_worker_last_alive_timestamp_seconds",
                   "Unix time the worker loop last turned or renewed a job's lease")
LAST_ALIVE.set_function(lambda: _last_alive)


def alive() -> None:
    """Marks the worker alive now (its loop turned, or a running job's lease was renewed)."""
    global _last_alive
    _last_alive = time.time()


def lease_renewed() -> None:
    """A heartbeat extended a job's lease."""
    LEASE_RENEWALS.inc()
    alive()


def seconds_since_alive() -> float:
    return time.time() - _last_alive


class QueueCollector:
    """Queue depth by state and the age of the oldest queued job, queried at each scrape.

    One connection of its own (reopened after an error) with a statement timeout, so a slow
    database shows up as ``iam_queue_up 0`` instead of a hung scrape.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection], timeout_ms: int = 2000) -> None:
        self._connect = connect
        self._timeout_ms = timeout_ms
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _query(self) -> dict:
        from psycopg.rows import dict_row

        from iam_cluster.db.queries import QUERIES

        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self._conn.execute(f"SET statement_timeout = {int(self._timeout_ms)}")
        with self._conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(QUERIES["queue_stats"]).fetchone()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("iam_queue_up", "Whether the queue could be read at this scrape")
        try:
            with self._lock:
                row = self._query()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the failure, never raises it
            log.warning("queue metrics unavailable", error=f"{type(exc).__name__}: {exc}")
            self.close()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("iam_queue_jobs", "Jobs in the queue by state (runnable: queued and due; "
                                 "lease_expired: processing under a lapsed lease)", labels=["state"])
        for state in ("queued", "runnable", "processing", "lease_expired"):
            jobs.add_metric([state], row[state])
        yield jobs
        yield GaugeMetricFamily("iam_queue_oldest_job_age_seconds", "Age of the oldest queued job (0: none)",
                                value=row["oldest_queued_age_seconds"])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Chain:
    """One collector out of several (the process-wide registry and the queue)."""

    def __init__(self, *sources) -> None:
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - scrapes every few seconds
        pass


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP from a daemon thread.

    Args:
        host: Address to bind.
        port: Port (0: any free one; see ``port`` after ``start``).
        queue: The queue collector, or None to leave queue metrics out.
        max_silence_s: ``/healthz`` answers 503 once the worker has been silent this long.
    """

    def __init__(self, host: str, port: int, queue: QueueCollector | None, max_silence_s: float) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Chain(REGISTRY, queue) if queue is not None else _Chain(REGISTRY))
        self.queue = queue
        self.max_silence_s = max_silence_s
        self._server = make_server(host, port, self._app, ThreadingWSGIServer, handler_class=_Quiet)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="iam-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.queue is not None:
            self.queue.close()

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body, status, kind = generate_latest(self.registry), "200 OK", CONTENT_TYPE_LATEST
        elif path == "/healthz":
            silent = seconds_since_alive()
            ok = silent <= self.max_silence_s
            body = json.dumps({"status": "ok" if ok else "stalled", "seconds_since_alive": round(silent, 3),
                               "max_silence_seconds": self.max_silence_s}).encode()
            status, kind = ("200 OK" if ok else "503 Service Unavailable"), "application/json"
        else:
            body, status, kind = b'{"error": "not found"}', "404 Not Found", "application/json"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]


def start_metrics_server(settings: Settings, connect: Callable[[], psycopg.Connection],
                         host: str = "0.0.0.0") -> MetricsServer | None:
    """The worker's server on ``settings.observability.metrics_port``; None when metrics are off.

    A port in use is logged and the worker runs on without metrics (a second worker on one host).
    """
    obs = settings.observability
    if not obs.metrics_enabled or not obs.metrics_port:
        return None
    try:
        server = MetricsServer(host, obs.metrics_port, QueueCollector(connect),
                               max_silence_s=max(30.0, settings.worker.lease_seconds))
    except OSError as exc:
        log.warning("metrics server not started", port=obs.metrics_port, error=str(exc))
        return None
    log.info("metrics server listening", port=server.port)
    return server.start()
