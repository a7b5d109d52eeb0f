"""Rate limits over HTTP: per IP, per user, tighter on login/register, per account on failed sign-ins;
under load they hold; a dead or hanging Redis degrades them (sign-in and sending fail closed, the
rest goes on) without slowing requests; forwarded addresses are believed only from trusted proxies."""

from __future__ import annotations

import contextlib
import time

import msgspec
import pytest
import redis

from iam_cluster.api.ratelimit import WINDOW_S
from tests.fixtures.services import window_with


@contextlib.contextmanager
def _client(settings, **api):
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    settings = msgspec.structs.replace(settings, api=msgspec.structs.replace(settings.api, **api))
    with TestClient(create_app(settings)) as c:
        yield c


def _window_with(seconds_left: float) -> None:
    window_with(seconds_left, WINDOW_S)


@pytest.fixture(autouse=True)
def _not_at_a_window_edge():
    """Start a test well inside one window, so counts are exact."""
    _window_with(5)


def _assert_limited(r):
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= WINDOW_S


def _rejections() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("iam_api_rate_limit_rejections_total") or 0.0


def test_per_ip_limit(api_settings, make_user):
    _, _, _, headers = make_user()
    before = _rejections()
    with _client(api_settings, rate_limit_per_ip=3, rate_limit_per_user=100) as client:
        for _ in range(3):
            assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        _assert_limited(client.get("/api/v1/users/me", headers=headers))
        # Unauthenticated requests from the same IP share the budget.
        _assert_limited(client.get("/api/v1/users/me"))
        assert client.get("/health").status_code == 200  # probes are never limited
        metrics = client.get("/metrics").text
    assert _rejections() == before + 2
    assert 'iam_api_requests_total{app_name="iam-api",method="GET",path="/api/v1/users/me",status_code="429"}' in metrics
    keys = redis.Redis.from_url(api_settings.redis.url).keys(api_settings.redis.key_prefix + "*")
    assert keys and all(k.decode().startswith(api_settings.redis.key_prefix + "rl:") for k in keys)


def test_login_and_register_have_a_tighter_budget(api_settings, make_user):
    _, email, password, headers = make_user()
    with _client(api_settings, auth_rate_limit_per_ip=2, rate_limit_per_ip=100) as client:
        assert client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password"}).status_code == 401
        assert client.post("/api/v1/auth/register", json={"email": "x@example.com", "password": "short"}).status_code == 400
        _assert_limited(client.post("/api/v1/auth/login", json={"email": email, "password": password}))
        # Other routes keep the general budget.
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200


def test_per_user_limit_is_separate_per_user(api_settings, make_user):
    _, _, _, a_headers = make_user()
    _, _, _, b_headers = make_user()
    with _client(api_settings, rate_limit_per_user=2, rate_limit_per_ip=100) as client:
        for _ in range(2):
            assert client.get("/api/v1/users/me", headers=a_headers).status_code == 200
        _assert_limited(client.get("/api/v1/users/me", headers=a_headers))
        for _ in range(2):
            assert client.get("/api/v1/users/me", headers=b_headers).status_code == 200
        _assert_limited(client.get("/api/v1/users/me", headers=b_headers))
        # Anonymous requests from the same IP are not charged to either user.
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}).status_code == 401


def test_redis_down_degrades_limits_and_fails_closed_where_it_must(api_settings, make_user):
    _, email, password, headers = make_user()
    down = msgspec.structs.replace(api_settings, redis=msgspec.structs.replace(
        api_settings.redis, url="redis://127.0.0.1:1/0"))
    with _client(down, rate_limit_per_ip=5, rate_limit_per_user=100) as client:
        for _ in range(3):  # the documented degraded mode: this process counts the budgets
            assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        for r in (client.post("/api/v1/auth/login", json={"email": email, "password": password}),
                  client.post("/api/v2/messages", json={"recipient_email": email, "subject": "s", "body": "b"},
                              headers=headers)):
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
            assert int(r.headers["retry-after"]) > 0
        _assert_limited(client.get("/api/v1/users/me", headers=headers))  # the sixth request of this IP


def test_redis_failing_mid_window_does_not_reset_the_budget(api_settings, make_user):
    """This process counts every request beside Redis, so when Redis dies the requests it has
    already admitted in the window still count (a burst that outran Redis admitted 512 of 600
    against a limit of 300 before)."""
    from redis.asyncio import Redis

    _, _, _, headers = make_user()
    with _client(api_settings, rate_limit_per_ip=4, rate_limit_per_user=100) as client:
        for _ in range(3):
            assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        client.app.state.redis = Redis.from_url("redis://127.0.0.1:1/0")  # Redis gone
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200  # the 4th
        _assert_limited(client.get("/api/v1/users/me", headers=headers))


def test_a_hanging_redis_costs_requests_almost_nothing(api_settings, make_user):
    """A Redis that accepts connections and never answers: one request waits its timeout, then the
    breaker skips Redis; a WebSocket's ping is still answered."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()) for _ in range(64)], daemon=True).start()
    _, _, _, headers = make_user()
    hanging = msgspec.structs.replace(api_settings, redis=msgspec.structs.replace(
        api_settings.redis, url=f"redis://127.0.0.1:{listener.getsockname()[1]}/0"))
    with _client(hanging) as client:
        started = time.monotonic()
        for _ in range(20):
            assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        assert time.monotonic() - started < 5.0  # one timeout, not twenty
        token = headers["Authorization"].split()[1]
        with client.websocket_connect(f"/api/v2/messages/ws?token={token}") as ws:
            ws.send_json({"type": "ping"})
            assert ws.receive_json(timeout=5)["type"] == "pong"
    listener.close()


def test_failed_sign_ins_slow_the_account_down(api_settings, make_user):
    _, email, password, _ = make_user()
    with _client(api_settings, login_free_failures=3, auth_rate_limit_per_ip=1000) as client:
        for _ in range(3):
            assert client.post("/api/v1/auth/login", json={"email": email, "password": "nope nope nope"}).status_code == 401
        refused = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1  # even the right one
        time.sleep(int(refused.headers["retry-after"]) + 0.1)
        assert client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code == 200
        # A success clears the count.
        assert client.post("/api/v1/auth/login", json={"email": email, "password": "nope nope nope"}).status_code == 401


def test_limits_hold_under_200_concurrent_requests(api_settings, make_user, tmp_path):
    import asyncio

    import httpx

    from tests.fixtures.api import api_process

    _, _, _, headers = make_user()
    with api_process(api_settings, tmp_path, RATE_LIMIT_PER_IP=300, RATE_LIMIT_PER_USER=100_000) as url:
        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                sem = asyncio.Semaphore(200)

                async def one() -> int:
                    async with sem:
                        return (await client.get(f"{url}/api/v1/users/me", headers=headers)).status_code

                return await asyncio.gather(*(one() for _ in range(600)))

        _window_with(40)  # the whole burst inside one window, even on a loaded machine
        codes = asyncio.run(burst())
    assert codes.count(200) <= 300 and codes.count(429) >= 300 and set(codes) <= {200, 429}, sorted(set(codes))


def test_forwarded_for_is_believed_only_from_trusted_proxies(api_settings, tmp_path):
    """``iam-cluster api`` as deployed: a forged X-Forwarded-For from an untrusted peer changes nothing."""
    import httpx

    from tests.fixtures.api import api_process

    with api_process(api_settings, tmp_path, RATE_LIMIT_PER_IP=5) as url:
        codes = [httpx.get(f"{url}/api/v1/users/me", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(10)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 5  # one budget: the forged addresses were ignored
