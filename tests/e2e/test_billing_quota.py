"""Plans, usage figures and quotas over HTTP: concurrent submissions at the quota's edge, enterprise unlimited."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from decimal import Decimal

import httpx
import msgspec
import psycopg
import pytest

from iam_cluster.billing.plans import billable_minutes

CLIP = "jfk.flac"  # 11.0 s: 0.2 billable minutes


@pytest.fixture
def server(api_settings):
    """The app under uvicorn on a free local port (real concurrent requests); yields its base URL."""
    import uvicorn

    from iam_cluster.api.app import create_app

    settings = msgspec.structs.replace(
        api_settings, database=msgspec.structs.replace(api_settings.database, pool_min=2, pool_max=20))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


def _meeting_with_audio(http, headers, audio: bytes, name: str = CLIP) -> str:
    meeting = http.post("/api/v1/meetings", json={"title": "billing"}, headers=headers).json()
    r = http.post(f"/api/v1/meetings/{meeting['id']}/upload?filename={name}", content=audio, headers=headers)
    assert r.status_code in (200, 201), r.text
    return meeting["id"]


def _prefill(url: str, user_id, minutes: Decimal) -> None:
    """A completed job's ledger row worth ``minutes`` this month."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO usage_records (user_id, job_id, audio_seconds, billable_minutes, model, cost) "
                  "VALUES (%s, %s, %s, %s, 'tiny.en', 0)", [user_id, uuid.uuid4(), float(minutes) * 60, minutes])


def test_plans_endpoint(client):
    body = client.get("/api/v1/billing/plans").json()
    plans = {p["id"]: p for p in body["plans"]}
    assert {k: (Decimal(str(p["price_monthly"])), p["monthly_minutes"]) for k, p in plans.items()} == {
        "free": (0, 60), "pro": (29, 500), "enterprise": (99, None)}
    assert [(t["up_to_minutes"], Decimal(str(t["price_per_minute"]))) for t in body["usage_rate"]] == [
        (100, Decimal("0.10")), (500, Decimal("0.08")), (None, Decimal("0.06"))]


def test_concurrent_submissions_at_the_quota_edge(server, api_settings, make_user, data_dir):
    user_id, _, _, headers = make_user()
    audio = (data_dir / CLIP).read_bytes()
    with httpx.Client(base_url=server, timeout=60) as http:
        meetings = [_meeting_with_audio(http, headers, audio) for _ in range(20)]
        durations = {http.get(f"/api/v1/meetings/{m}", headers=headers).json()["duration_seconds"] for m in meetings}
    assert len(durations) == 1
    per_job = billable_minutes(durations.pop())
    assert per_job == Decimal("0.2")
    # 7 jobs fit, with 0.1 minute to spare that an 8th cannot use
    _prefill(api_settings.database.url, user_id, Decimal(60) - 7 * per_job - Decimal("0.1"))

    barrier = threading.Barrier(20)
    statuses: list[httpx.Response] = []

    def submit(meeting_id: str) -> None:
        with httpx.Client(base_url=server, timeout=60) as http:
            barrier.wait()
            statuses.append(http.post(f"/api/v1/meetings/{meeting_id}/transcribe", json={}, headers=headers))

    threads = [threading.Thread(target=submit, args=(m,)) for m in meetings]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in statuses)
    assert codes == [202] * 7 + [402] * 13, codes
    refused = next(r for r in statuses if r.status_code == 402).json()
    assert refused["error"]["code"] == "quota_exceeded" and refused["error"]["status"] == 402

    with httpx.Client(base_url=server, timeout=60) as http:
        usage = http.get("/api/v1/billing/usage", headers=headers).json()
    assert Decimal(str(usage["reserved_minutes"])) == 7 * per_job
    assert Decimal(str(usage["remaining_minutes"])) == Decimal("0.1")
    assert Decimal(str(usage["minutes_this_month"])) == Decimal(60) - 7 * per_job - Decimal("0.1")
    with psycopg.connect(api_settings.database.url) as c:
        jobs = c.execute("SELECT count(*) FROM jobs WHERE user_id = %s", [user_id]).fetchone()[0]
        held = c.execute("SELECT count(*), sum(minutes) FROM quota_reservations WHERE user_id = %s",
                         [user_id]).fetchone()
    assert jobs == 7 and held == (7, 7 * per_job)


def test_usage_figures_and_enterprise_unlimited(client, api_settings, make_user, data_dir):
    user_id, _, _, headers = make_user()
    usage = client.get("/api/v1/billing/usage", headers=headers).json()
    assert usage["plan"] == "free" and usage["included_minutes"] == 60
    assert Decimal(str(usage["remaining_minutes"])) == 60 and Decimal(str(usage["minutes_this_month"])) == 0

    _prefill(api_settings.database.url, user_id, Decimal("59.9"))
    meeting = _meeting_with_audio(client, headers, (data_dir / CLIP).read_bytes())
    r = client.post(f"/api/v1/meetings/{meeting}/transcribe", json={}, headers=headers)
    assert r.status_code == 402 and r.json()["error"]["code"] == "quota_exceeded"
    usage = client.get("/api/v1/billing/usage", headers=headers).json()
    assert Decimal(str(usage["minutes_this_month"])) == Decimal("59.9")
    assert Decimal(str(usage["total_minutes"])) == Decimal("59.9")
    assert Decimal(str(usage["remaining_minutes"])) == Decimal("0.1") and usage["jobs_this_month"] == 1

    with psycopg.connect(api_settings.database.url, autocommit=True) as c:
        c.execute("UPDATE users SET tier = 'enterprise' WHERE id = %s", [user_id])
        _prefill(api_settings.database.url, user_id, Decimal(100000))
    r = client.post(f"/api/v1/meetings/{meeting}/transcribe", json={}, headers=headers)
    assert r.status_code == 202, r.text
    usage = client.get("/api/v1/billing/usage", headers=headers).json()
    assert usage["plan"] == "enterprise" and usage["remaining_minutes"] is None
    assert usage["included_minutes"] is None and Decimal(str(usage["reserved_minutes"])) == Decimal("0.2")
