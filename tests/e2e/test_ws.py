"""Live events over WebSocket across two API processes: real uvicorn servers, PostgreSQL, Redis, clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from iam_cluster import events

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: Every wait in this module is bounded by one of these (seconds).
DELIVERY = 1.0
QUIET = 0.5
STARTUP = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_apis(api_settings):
    """Two API processes (uvicorn) on the same database and Redis prefix; yields their base URLs."""
    env = {**os.environ, "DATABASE_URL": api_settings.database.url,
           "JWT_SECRET_KEY": api_settings.auth.jwt_secret_key,
           "REDIS_URL": api_settings.redis.url, "REDIS_KEY_PREFIX": api_settings.redis.key_prefix,
           "STORAGE_BACKEND": "local", "STORAGE_ROOT": str(api_settings.storage.root),
           "DATABASE_POOL_MIN": "1", "DATABASE_POOL_MAX": "4"}
    procs, urls = [], []
    try:
        for _ in range(2):
            port = _free_port()
            code = ("import uvicorn\nfrom iam_cluster.api.app import create_app\n"
                    f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')")
            procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + STARTUP
        for proc, url in zip(procs, urls):
            while True:
                assert proc.poll() is None, f"API process for {url} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"API at {url} did not start in {STARTUP}s"
                try:
                    if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def ws_url(base: str, headers: dict, **query) -> str:
    token = headers["Authorization"].split(" ", 1)[1]
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return base.replace("http://", "ws://") + f"/api/v2/messages/ws?token={token}{extra}"


async def next_event(ws, types: set[str] | None = None, timeout: float = DELIVERY) -> dict:
    """The next event (of one of ``types``, others skipped) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {types or 'event'} within {timeout}s")
        event = json.loads(await asyncio.wait_for(ws.recv(), left))
        if types is None or event["type"] in types:
            return event


async def drain(ws, seconds: float = 0.3) -> list[dict]:
    """Whatever arrives within ``seconds`` (presence of our own connection, say)."""
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return got


async def publish(settings, user_id, event_type: str, data: dict) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis.url)
    try:
        await events.publish(redis, settings.redis.key_prefix, user_id, event_type, data)
    finally:
        await redis.aclose()


def test_event_raised_on_one_process_reaches_a_socket_on_the_other(two_apis, api_settings, make_user):
    a_url, b_url = two_apis
    alice, alice_email, _, alice_h = make_user()
    bob, _, _, bob_h = make_user()
    carol, _, _, carol_h = make_user()

    async def scenario() -> None:
        async with connect(ws_url(a_url, alice_h), open_timeout=5) as alice_ws, \
                connect(ws_url(b_url, carol_h), open_timeout=5) as carol_ws:
            await drain(alice_ws)
            await drain(carol_ws)
            # Published straight to Redis (as the messages API does) reaches process A's socket.
            t = time.monotonic()
            await publish(api_settings, alice, "new_message", {"id": "m1", "subject": "hi"})
            event = await next_event(alice_ws, {"new_message"})
            assert event == {"type": "new_message", "data": {"id": "m1", "subject": "hi"}}
            assert time.monotonic() - t < DELIVERY
            # Through process B's REST API: stored there, delivered by process A.
            t = time.monotonic()
            async with httpx.AsyncClient(base_url=b_url, headers=bob_h, timeout=5) as http:
                r = await http.post("/api/v2/messages", json={"recipient_id": str(alice),
                                                              "subject": "cross-process", "body": "<b>hi</b>"})
            assert r.status_code == 201, r.text
            event = await next_event(alice_ws, {"new_message"})
            assert time.monotonic() - t < DELIVERY
            assert event["data"]["subject"] == "cross-process"
            assert event["data"]["sender_id"] == str(bob) and r.json()["id"] in json.dumps(event["data"])
            # The third user heard none of it.
            assert [e for e in await drain(carol_ws, QUIET) if e["type"] != "presence"] == []

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_ping_pong_typing_and_presence(two_apis, make_user):
    a_url, b_url = two_apis
    alice, _, _, alice_h = make_user()
    bob, _, _, bob_h = make_user()
    carol, _, _, _ = make_user()
    sent = httpx.post(f"{a_url}/api/v2/messages", json={"recipient_id": str(bob), "subject": "hi", "body": "x"},
                      headers=alice_h)
    assert sent.status_code == 201, sent.text  # alice and bob now share a conversation

    async def scenario() -> None:
        async with connect(ws_url(a_url, alice_h), open_timeout=5) as alice_ws:
            await alice_ws.send(json.dumps({"type": "ping"}))
            assert (await next_event(alice_ws, {"pong"}))["type"] == "pong"
            async with connect(ws_url(b_url, bob_h), open_timeout=5) as bob_ws:
                await drain(bob_ws)
                await alice_ws.send(json.dumps({"type": "typing", "data": {"to": str(bob)}}))
                typing = await next_event(bob_ws, {"typing"})
                assert typing["data"]["from"] == str(alice)
                # No typing events to someone alice has never written to (nor been written by).
                await alice_ws.send(json.dumps({"type": "typing", "data": {"to": str(carol)}}))
                assert (await next_event(alice_ws, {"error"}))["data"]["code"] == "forbidden"
                # Alice's second device (on the other process) sees her come online and go.
                async with connect(ws_url(b_url, alice_h), open_timeout=5):
                    online = await next_event(alice_ws, {"presence"})
                    assert online["data"]["status"] == "online" and online["data"]["user_id"] == str(alice)
                # An earlier "online" (this socket's own, fanned out late) may come first: skip to "offline".
                offline = await next_event(alice_ws, {"presence"})
                while offline["data"]["status"] == "online":
                    offline = await next_event(alice_ws, {"presence"})
                assert offline["data"]["status"] == "offline"
            await alice_ws.send("not json")
            assert (await next_event(alice_ws, {"error"}))["data"]["code"] == "invalid_message"

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("case", ["other_user", "other_user_in_path", "bad_token", "no_token", "inactive"])
def test_refused_connections(two_apis, api_settings, make_user, case):
    a_url, _ = two_apis
    alice, _, _, alice_h = make_user()
    bob, _, _, _ = make_user()
    base = a_url.replace("http://", "ws://") + "/api/v2/messages/ws"
    url, code = {
        "other_user": (ws_url(a_url, alice_h, user_id=bob), 4403),
        "other_user_in_path": (f"{base}/{bob}?token={alice_h['Authorization'].split()[1]}", 4403),
        "bad_token": (base + "?token=not.a.token", 4401),
        "no_token": (base, 4401),
        "inactive": (ws_url(a_url, alice_h), 4401),
    }[case]
    if case == "inactive":
        import psycopg

        with psycopg.connect(api_settings.database.url, autocommit=True) as conn:
            conn.execute("UPDATE users SET is_active = false WHERE id = %s", [alice])

    async def scenario() -> None:
        async with connect(url, open_timeout=5) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code

    asyncio.run(asyncio.wait_for(scenario(), 30))
    if case.startswith("other_user"):  # its own id is fine, in the query or in the path
        own_url = ws_url(a_url, alice_h, user_id=alice) if case == "other_user" else \
            f"{base}/{alice}?token={alice_h['Authorization'].split()[1]}"

        async def own() -> None:
            async with connect(own_url, open_timeout=5) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                assert (await next_event(ws, {"pong"}))["type"] == "pong"

        asyncio.run(asyncio.wait_for(own(), 30))


def test_job_completed_by_the_worker_reaches_its_owner(two_apis, api_settings, make_user, conn, storage,
                                                       runner, data_dir):
    import msgspec

    from iam_cluster.settings import WorkerSettings
    from iam_cluster.worker.loop import Worker
    from tests.fixtures.worker import add_meeting, enqueue

    a_url, b_url = two_apis
    owner, meeting_id = add_meeting(conn, storage, (data_dir / "spk1_snt1.wav").read_bytes())
    from iam_cluster.api.security import create_access_token

    owner_h = {"Authorization": "Bearer " + create_access_token(owner, "owner@example.com", api_settings.auth)}
    _, _, _, other_h = make_user()
    job = enqueue(conn, owner, meeting_id, {"language": "en", "beam_size": 1})
    settings = msgspec.structs.replace(
        api_settings, storage=msgspec.structs.replace(api_settings.storage, root=storage.root),
        worker=WorkerSettings(lease_seconds=30, heartbeat_seconds=0.2, max_attempts=3, retry_base_seconds=0))

    async def scenario() -> None:
        async with connect(ws_url(a_url, owner_h), open_timeout=5) as owner_ws, \
                connect(ws_url(b_url, other_h), open_timeout=5) as other_ws:
            await drain(owner_ws)
            await drain(other_ws)
            worker = Worker(settings, runner=runner, storage=storage, worker_id="ws-test")
            try:
                assert await asyncio.wait_for(asyncio.to_thread(worker.run_once), 120)
            finally:
                worker.close()
            done = await next_event(owner_ws, {"job_completed"}, timeout=5)
            assert done["data"]["job_id"] == str(job.id) and done["data"]["meeting_id"] == str(meeting_id)
            note = await next_event(owner_ws, {"notification"}, timeout=5)
            assert note["data"]["kind"] == "job_completed" and note["data"]["payload"]["job_id"] == str(job.id)
            assert [e for e in await drain(other_ws, QUIET) if e["type"] != "presence"] == []

    asyncio.run(asyncio.wait_for(scenario(), 180))
    (kind, payload), = conn.execute("SELECT kind, payload FROM notifications WHERE user_id = %s",
                                    [owner]).fetchall()
    assert kind == "job_completed" and payload["meeting_id"] == str(meeting_id)


def test_failed_job_notifies_and_redis_outage_never_fails_a_job(conn, settings, storage, runner):
    """With Redis unreachable the job still ends (failed here) and its notification row is written."""
    import msgspec

    from iam_cluster.queue import Jobs
    from iam_cluster.worker.loop import Worker
    from tests.fixtures.worker import add_meeting, enqueue

    owner, meeting_id = add_meeting(conn, storage, b"this is not audio at all " * 40)
    job = enqueue(conn, owner, meeting_id, {})
    dead = msgspec.structs.replace(settings, redis=msgspec.structs.replace(
        settings.redis, url=f"redis://127.0.0.1:{_free_port()}/0"))
    worker = Worker(dead, runner=runner, storage=storage)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    assert Jobs(conn).get(job.id).status == "failed"
    (kind, payload), = conn.execute("SELECT kind, payload FROM notifications WHERE user_id = %s",
                                    [owner]).fetchall()
    assert kind == "job_failed" and payload["error_code"] == "unsupported_media"
    assert payload["job_id"] == str(job.id)


def test_a_slow_socket_drops_its_oldest_events_and_blocks_no_one():
    from iam_cluster.api.ws import EventHub, Subscriber

    hub = EventHub(redis=None, prefix="p:")
    slow, fast = hub.add("u1"), hub.add("u2")
    slow.queue = Subscriber("u1", size=3).queue
    hub.local["u1"] = {slow}
    for i in range(10):
        hub.dispatch("p:events:u1", f"e{i}")
    hub.dispatch("p:events:u2", "x")
    assert [slow.queue.get_nowait() for _ in range(3)] == ["e7", "e8", "e9"] and slow.dropped == 7
    assert fast.queue.get_nowait() == "x"
    hub.remove(slow)
    hub.remove(fast)
    assert hub.local == {}
