"""The worker's metrics server on a real database: queue depth by state, oldest job's age, liveness, outcomes."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from prometheus_client import REGISTRY

from iam_cluster.observability import worker as worker_obs
from iam_cluster.observability.worker import MetricsServer, QueueCollector
from iam_cluster.worker.loop import Worker
from tests.fixtures.services import http_get, scrape, value
from tests.fixtures.worker import add_meeting, enqueue


@pytest.fixture
def metrics_server(database_url):
    server = MetricsServer("127.0.0.1", 0, QueueCollector(lambda: psycopg.connect(database_url, autocommit=True)),
                           max_silence_s=30.0).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def queue_jobs(conn, storage, n: int) -> list:
    jobs = []
    for _ in range(n):
        user_id, meeting_id = add_meeting(conn, storage, b"x")
        jobs.append(enqueue(conn, user_id, meeting_id, {}))
    return jobs


def test_queue_depth_by_state_and_the_oldest_jobs_age(conn, storage, metrics_server):
    empty = scrape(metrics_server)
    assert value(empty, "iam_queue_up") == 1 and value(empty, "iam_queue_jobs", state="queued") == 0
    assert value(empty, "iam_queue_oldest_job_age_seconds") == 0
    jobs = queue_jobs(conn, storage, 6)
    conn.execute("UPDATE jobs SET created_at = now() - interval '10 minutes' WHERE id = %s", [jobs[0].id])
    conn.execute("UPDATE jobs SET run_after = now() + interval '1 hour' WHERE id = %s", [jobs[1].id])
    running = "UPDATE jobs SET status = 'processing', lease_owner = %s, lease_expires_at = now() + %s WHERE id = %s"
    conn.execute(running, ["w", dt.timedelta(minutes=1), jobs[2].id])
    conn.execute(running, ["dead", dt.timedelta(seconds=-1), jobs[3].id])  # its worker died
    conn.execute("UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = %s", [jobs[4].id])
    m = scrape(metrics_server)
    assert value(m, "iam_queue_jobs", state="queued") == 3  # jobs 0, 1, 5
    assert value(m, "iam_queue_jobs", state="runnable") == 2  # job 1 waits for its backoff
    assert value(m, "iam_queue_jobs", state="processing") == 2
    assert value(m, "iam_queue_jobs", state="lease_expired") == 1
    assert 600 <= value(m, "iam_queue_oldest_job_age_seconds") < 660


def test_a_database_outage_shows_as_queue_down_not_a_failed_scrape():
    def refuse():
        raise psycopg.OperationalError("connection refused")

    server = MetricsServer("127.0.0.1", 0, QueueCollector(refuse), max_silence_s=30.0).start()
    try:
        m = scrape(f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
    assert value(m, "iam_queue_up") == 0 and value(m, "iam_queue_jobs") is None
    assert value(m, "iam_worker_last_alive_timestamp_seconds") > 0


def test_healthz_reports_a_stalled_worker(metrics_server, monkeypatch):
    worker_obs.alive()
    status, body = http_get(metrics_server + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    monkeypatch.setattr(worker_obs, "_last_alive", worker_obs._last_alive - 120)
    status, body = http_get(metrics_server + "/healthz")
    assert status == 503 and json.loads(body)["status"] == "stalled"
    assert http_get(metrics_server + "/other")[0] == 404


def test_failures_are_counted_by_code(conn, settings, storage, runner):
    def failed(code: str) -> float:
        return REGISTRY.get_sample_value("iam_worker_jobs_failed_total", {"code": code}) or 0.0

    before, claimed = failed("unsupported_media"), REGISTRY.get_sample_value("iam_worker_jobs_claimed_total")
    user_id, meeting_id = add_meeting(conn, storage, b"this is not audio at all " * 40)
    enqueue(conn, user_id, meeting_id, {})
    worker = Worker(settings, runner=runner, storage=storage)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    assert failed("unsupported_media") == before + 1
    assert REGISTRY.get_sample_value("iam_worker_jobs_claimed_total") == claimed + 1
    assert REGISTRY.get_sample_value("iam_worker_job_duration_seconds_count", {"outcome": "failed"}) >= 1
