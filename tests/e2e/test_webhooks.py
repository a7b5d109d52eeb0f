"""Webhooks end to end: a real worker delivers signed events to a receiver on loopback that fails
its first deliveries; targets on private addresses are refused."""

from __future__ import annotations

import http.server
import json
import threading
import time

import httpx
import msgspec
import pytest

from iam_cluster.webhooks.signing import HEADER, verify
from iam_cluster.worker.loop import Worker


class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers 500 to its first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[int, dict, bytes, float]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.requests) < receiver.failures else 200
                receiver.requests.append((status, dict(self.headers), body, time.monotonic()))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[tuple[dict, bytes]]:
        return [(h, b) for status, h, b, _ in self.requests if status == 200]


@pytest.fixture
def webhook_settings(api_settings):
    """Loopback targets allowed (the receiver is local); retries a fraction of a second apart."""
    return msgspec.structs.replace(api_settings, webhooks=msgspec.structs.replace(
        api_settings.webhooks, allow_private=True, base_delay_s=0.2, poll_s=0.2))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_signed_deliveries_survive_a_failing_receiver(webhook_settings, make_user, runner, data_dir):
    from tests.fixtures.api import serving

    receiver = Receiver(failures=3)
    _, _, _, headers = make_user()
    with serving(webhook_settings, runner) as api:
        r = httpx.post(f"{api}/api/v1/webhooks/endpoints", json={"url": receiver.url + "/hooks"}, headers=headers)
        assert r.status_code == 201, r.text
        secret = httpx.get(f"{api}/api/v1/webhooks/secret", headers=headers).json()["secret"]
        meeting = httpx.post(f"{api}/api/v1/meetings", json={"title": "hooked"}, headers=headers).json()
        url = f"{api}/api/v1/meetings/{meeting['id']}"
        clip = data_dir / "spk1_snt1.wav"
        assert httpx.post(f"{url}/upload?filename={clip.name}", content=clip.read_bytes(),
                          headers=headers).status_code == 200
        job = httpx.post(f"{url}/transcribe", json={"callback_url": receiver.url + "/callback"}, headers=headers)
        assert job.status_code == 202, job.text
        stop = threading.Event()
        worker = threading.Thread(target=Worker(webhook_settings, runner=runner).run, args=(stop,))
        worker.start()
        try:
            wait_for(lambda: len(receiver.accepted()) == 2, 60, "both deliveries to be accepted")
            time.sleep(1.0)  # nothing more may come
        finally:
            stop.set()
            worker.join(timeout=60)
        log = httpx.get(f"{api}/api/v1/webhooks/deliveries", headers=headers).json()
    accepted = receiver.accepted()
    assert len(accepted) == 2 and len(receiver.requests) == 5  # 3 failures, then one per target
    events = [json.loads(body) for _, body in accepted]
    assert {e["type"] for e in events} == {"job.completed"} and len({e["id"] for e in events}) == 1
    assert events[0]["data"]["job"]["id"] == job.json()["id"]
    for hdrs, body in accepted:
        verify(secret, hdrs[HEADER], body)  # raises when the signature is wrong
        assert hdrs["IAM-Event-Id"] == events[0]["id"]
    assert sorted(d["status"] for d in log) == ["delivered", "delivered"]
    assert sorted(d["attempts"] for d in log) == [1, 4] or sorted(d["attempts"] for d in log) == [2, 3]


def test_private_targets_are_refused(api_settings, client, make_user):
    _, _, _, headers = make_user()
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.8/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/x", "ftp://example.com/x"):
        r = client.post("/api/v1/webhooks/endpoints", json={"url": url}, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value", (url, r.text)
    mid = client.post("/api/v1/meetings", json={"title": "m"}, headers=headers).json()["id"]
    r = client.post(f"/api/v1/meetings/{mid}/transcribe", json={"callback_url": "http://192.168.1.5/cb"},
                    headers=headers)
    assert r.status_code == 422 and r.json()["error"]["field"] == "callback_url"


def test_redelivery_and_the_delivery_log(webhook_settings, make_user, conn):
    """A manual redelivery sends the same event (same id) again; the log shows every row."""
    from iam_cluster.webhooks import outbox
    from iam_cluster.webhooks.deliver import Deliverer
    from tests.fixtures.api import serving

    receiver = Receiver(failures=0)
    user_id, _, _, headers = make_user()
    with serving(webhook_settings, None) as api:
        httpx.post(f"{api}/api/v1/webhooks/endpoints", json={"url": receiver.url, "events": ["batch.completed"]},
                   headers=headers)
        with conn.transaction():
            outbox.record(conn, user_id, "batch.completed", {"batch": {"id": "b1"}})
            outbox.record(conn, user_id, "job.completed", {})  # not subscribed: nothing queued
        deliverer = Deliverer(webhook_settings.database.url, webhook_settings.webhooks)
        try:
            assert deliverer.deliver_due() == 1
            (first,) = httpx.get(f"{api}/api/v1/webhooks/deliveries", headers=headers).json()
            again = httpx.post(f"{api}/api/v1/webhooks/deliveries/{first['id']}/redeliver", headers=headers)
            assert again.status_code == 202 and again.json()["event_id"] == first["event_id"]
            assert deliverer.deliver_due() == 1
        finally:
            deliverer.close()
        log = httpx.get(f"{api}/api/v1/webhooks/deliveries", headers=headers).json()
    assert [d["status"] for d in log] == ["delivered", "delivered"]
    assert [json.loads(b)["id"] for _, b in receiver.accepted()] == [first["event_id"]] * 2
