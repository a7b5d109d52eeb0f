"""Rate limits over HTTP: per IP, per user, tighter on login/register; Redis down lets requests through."""

from __future__ import annotations

import contextlib
import time

import msgspec
import pytest
import redis

from iam_cluster.api.ratelimit import WINDOW_S


@contextlib.contextmanager
def _client(settings, **api):
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    settings = msgspec.structs.replace(settings, api=msgspec.structs.replace(settings.api, **api))
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(autouse=True)
def _not_at_a_window_edge():
    """Counters reset at each window's end: start a test well inside one so counts are exact."""
    if time.time() % WINDOW_S > WINDOW_S - 5:
        time.sleep(WINDOW_S - time.time() % WINDOW_S + 0.1)


def _assert_limited(r):
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= WINDOW_S


def _rejections(limit: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("iam_api_rate_limit_rejections_total", {"limit": limit}) or 0.0


def test_per_ip_limit(api_settings, make_user):
    _, _, _, headers = make_user()
    before = _rejections("ip")
    with _client(api_settings, rate_limit_per_ip=3, rate_limit_per_user=100) as client:
        for _ in range(3):
            assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        _assert_limited(client.get("/api/v1/users/me", headers=headers))
        # Unauthenticated requests from the same IP share the budget.
        _assert_limited(client.get("/api/v1/users/me"))
        assert client.get("/health").status_code == 200  # probes are never limited
        metrics = client.get("/metrics").text
    assert _rejections("ip") == before + 2  # counted by the limit passed
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


def test_redis_down_does_not_take_the_api_down(api_settings, make_user):
    _, _, _, headers = make_user()
    down = msgspec.structs.replace(api_settings, redis=msgspec.structs.replace(
        api_settings.redis, url="redis://127.0.0.1:1/0"))
    with _client(down, rate_limit_per_ip=1, rate_limit_per_user=1) as client:
        for _ in range(3):
            assert client.get("/api/v1/users/me", headers=headers).status_code == 200
