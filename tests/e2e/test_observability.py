"""A real job through live API and worker processes: their /metrics count it, their JSON lines share its ids."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from tests.fixtures.services import http_get, scrape, value

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple 42"
TRANSCRIBE_ROUTE = "/api/v1/meetings/{meeting_id}/transcribe"


def run_job(api_url: str, clip, request_id: str) -> tuple[dict, str]:
    """Register, upload ``clip``, queue its transcription; wait until done. ``(meeting, access token)``."""
    with httpx.Client(base_url=api_url, timeout=30) as http:
        account = {"email": "ops@example.com", "password": PASSWORD}
        assert http.post("/api/v1/auth/register", json=account).status_code == 201
        token = http.post("/api/v1/auth/login", json=account).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        meeting = http.post("/api/v1/meetings", json={"title": "metrics"}, headers=auth).json()
        url = f"/api/v1/meetings/{meeting['id']}"
        uploaded = http.post(f"{url}/upload?filename={clip.name}", content=clip.read_bytes(), headers=auth)
        assert uploaded.status_code in (200, 201)
        queued = http.post(f"{url}/transcribe", json={}, headers={**auth, "X-Request-ID": request_id})
        assert queued.status_code == 202 and queued.headers["x-request-id"] == request_id
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            polled = http.get(url, headers=auth).json()
            if polled["processing_status"] in ("completed", "failed"):
                return polled, token
            time.sleep(0.3)
    raise AssertionError("the job did not finish in 180 s")


def test_api_process_and_worker_metrics_and_logs_after_a_real_job(api_process, worker_process, harvard):
    request_id = "e2e-req-0001"
    meeting, token = run_job(api_process.url, harvard[0], request_id)
    assert meeting["processing_status"] == "completed", meeting
    job_id = meeting["job"]["id"]

    api = scrape(api_process.url)
    assert value(api, "iam_api_requests_total", path=TRANSCRIBE_ROUTE, method="POST", status_code="202") == 1
    assert value(api, "iam_api_request_duration_seconds_count", path=TRANSCRIBE_ROUTE, method="POST") == 1
    assert value(api, "iam_api_requests_total", path="/api/v1/meetings/{meeting_id}", method="GET") >= 1
    assert value(api, "iam_api_websocket_connections") == 0
    assert value(api, "iam_api_rate_limit_rejections_total") == 0

    worker = scrape(worker_process.url)
    assert value(worker, "iam_worker_jobs_claimed_total") == 1
    assert value(worker, "iam_worker_jobs_completed_total") == 1
    assert value(worker, "iam_worker_jobs_failed_total") is None
    assert value(worker, "iam_worker_job_duration_seconds_count", outcome="completed") == 1
    assert value(worker, "iam_worker_audio_seconds_total") == pytest.approx(meeting["duration_seconds"], abs=0.05)
    assert value(worker, "iam_worker_real_time_factor_count") == 1
    assert value(worker, "iam_worker_lease_renewals_total") >= 1
    assert value(worker, "iam_worker_lease_expiries_total") == 0
    assert value(worker, "iam_queue_up") == 1
    assert value(worker, "iam_queue_jobs", state="queued") == 0
    assert value(worker, "iam_queue_oldest_job_age_seconds") == 0
    status, body = http_get(worker_process.url + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"

    api_process.stop()
    worker_process.stop()
    lines = {name: [json.loads(line) for line in svc.log_lines()]  # every line is JSON, uvicorn's included
             for name, svc in (("api", api_process), ("worker", worker_process))}
    job_lines = [(name, line) for name, svc_lines in lines.items() for line in svc_lines
                 if line.get("job_id") == job_id]
    events = {(name, line["event"]) for name, line in job_lines}
    assert {("api", "job queued"), ("api", "request"), ("worker", "job claimed"), ("worker", "job completed")} <= events
    assert all(line["request_id"] == request_id for _, line in job_lines)
    assert {line["service"] for _, line in job_lines} == {"api", "worker"}
    assert any(line["logger"] == "uvicorn.error" for line in lines["api"])  # uvicorn routed through structlog
    everything = "".join(api_process.log_lines() + worker_process.log_lines())
    assert PASSWORD not in everything and token not in everything
