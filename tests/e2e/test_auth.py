"""Accounts over HTTP: register, login, refresh rotation with reuse detection, logout, /users."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import jwt
import psycopg
import pytest

from iam_cluster.api.security import create_access_token

PASSWORD = "correct horse battery"


def _register(client, email: str, password: str = PASSWORD, **extra):
    return client.post("/api/v1/auth/register", json={"email": email, "password": password, **extra})


def _login(client, email: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _family_rows(api_settings, refresh_token: str):
    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    with psycopg.connect(api_settings.database.url) as conn:
        return conn.execute(
            "SELECT t.revoked_at FROM refresh_tokens t"
            " WHERE t.family = (SELECT family FROM refresh_tokens WHERE token_hash = %(h)s)",
            {"h": digest},
        ).fetchall()


def test_account_lifecycle(client, api_settings):
    email = f"Alice-{uuid.uuid4().hex[:6]}@Example.com"
    r = _register(client, email, full_name="Alice")
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == email and user["full_name"] == "Alice" and not user["is_admin"]
    assert "password_hash" not in user and "password" not in user

    r = _login(client, email.lower())  # emails match whatever their case
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == api_settings.auth.access_token_expire_minutes * 60
    claims = jwt.decode(tokens["access_token"], api_settings.auth.jwt_secret_key, algorithms=["HS256"])
    assert claims["sub"] == user["id"] and claims["type"] == "access"

    me = client.get("/api/v1/users/me", headers=_bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    assert "password_hash" not in me.json()

    new_email = f"alice2-{uuid.uuid4().hex[:6]}@example.com"
    r = client.put("/api/v1/users/me", json={"full_name": "Alice B", "email": new_email},
                   headers=_bearer(tokens["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["full_name"] == "Alice B" and r.json()["email"] == new_email
    assert client.get(f"/api/v1/users/{user['id']}", headers=_bearer(tokens["access_token"])).status_code == 200

    # Rotation: a new pair, and the old refresh token is revoked and points to its successor.
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["access_token"] != tokens["access_token"]
    assert client.get("/api/v1/users/me", headers=_bearer(rotated["access_token"])).status_code == 200
    with psycopg.connect(api_settings.database.url) as conn:
        old = conn.execute("SELECT revoked_at, replaced_by FROM refresh_tokens WHERE token_hash = %(h)s",
                           {"h": hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()}).fetchone()
        new_id = conn.execute("SELECT id FROM refresh_tokens WHERE token_hash = %(h)s",
                              {"h": hashlib.sha256(rotated["refresh_token"].encode()).hexdigest()}).fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM refresh_tokens WHERE token_hash = %(t)s",
                              {"t": rotated["refresh_token"]}).fetchone()[0]
    assert old[0] is not None and old[1] == new_id
    assert stored == 0  # only hashes are stored

    # Reuse of the rotated token: refused, and the whole family (the live successor too) is revoked.
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert all(revoked is not None for (revoked,) in _family_rows(api_settings, rotated["refresh_token"]))
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401

    # Logout revokes a fresh session's refresh token.
    fresh = _login(client, new_email).json()
    r = client.post("/api/v1/auth/logout", json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 204
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 401
    # The old email no longer logs in; the new one does.
    assert _login(client, email).status_code == 401


def test_duplicate_email_is_409_whatever_the_case(client, make_user):
    _, email, _, headers = make_user(email=f"bob-{uuid.uuid4().hex[:6]}@example.com")
    r = _register(client, email.upper())
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    _, other_email, _, other_headers = make_user()
    r = client.put("/api/v1/users/me", json={"email": email.upper()}, headers=other_headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    # The failed update changed nothing.
    assert client.get("/api/v1/users/me", headers=other_headers).json()["email"] == other_email


@pytest.mark.parametrize("payload", [
    {"email": "not-an-email", "password": PASSWORD},
    {"email": "a@example.com", "password": "short"},
    {"email": "a@example.com", "password": "x" * 129},
    {"email": ("a" * 250) + "@example.com", "password": PASSWORD},
    {"email": "a@example.com", "password": PASSWORD, "is_admin": True},
    {"password": PASSWORD},
])
def test_bad_register_payloads_are_400_json(client, payload):
    r = client.post("/api/v1/auth/register", json=payload)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"


def test_malformed_json_is_400(client):
    r = client.post("/api/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["status"] == 400


def test_wrong_credentials_are_401_with_one_message(client, make_user):
    _, email, _, _ = make_user()
    wrong_password = _login(client, email, "wrong password!")
    unknown_email = _login(client, f"nobody-{uuid.uuid4().hex[:6]}@example.com")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()


def test_bad_access_tokens_are_401(client, api_settings, make_user):
    user_id, email, password, _ = make_user()
    auth = api_settings.auth
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired = create_access_token(user_id, email, auth, now=past)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    as_refresh = jwt.encode({"sub": str(user_id), "email": email, "type": "refresh", "iat": now, "exp": now + 600},
                            auth.jwt_secret_key, algorithm=auth.jwt_algorithm)
    forged = create_access_token(user_id, email, type(auth)(jwt_secret_key="someone-elses-secret"))
    refresh_token = _login(client, email, password).json()["refresh_token"]
    for headers in (
        {},
        _bearer("garbage"),
        _bearer(expired),
        _bearer(as_refresh),
        _bearer(forged),
        _bearer(refresh_token),  # an opaque refresh token is no access token
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        r = client.get("/api/v1/users/me", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] in {"unauthorized", "invalid_token"}


def test_garbage_refresh_token_is_401(client):
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-token"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert client.post("/api/v1/auth/logout", json={"refresh_token": "not-a-token"}).status_code == 204


def test_expired_refresh_token_is_401(client, api_settings, make_user):
    _, email, password, _ = make_user()
    token = _login(client, email, password).json()["refresh_token"]
    with psycopg.connect(api_settings.database.url, autocommit=True) as conn:
        conn.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = %(h)s",
                     {"h": hashlib.sha256(token.encode()).hexdigest()})
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": token}).status_code == 401


def test_users_see_only_themselves_admins_see_all(client, make_user):
    a_id, _, _, a_headers = make_user()
    b_id, _, _, b_headers = make_user()
    _, _, _, admin_headers = make_user(is_admin=True)
    assert client.get(f"/api/v1/users/{b_id}", headers=a_headers).status_code == 404
    missing = client.get(f"/api/v1/users/{uuid.uuid4()}", headers=a_headers)
    hidden = client.get(f"/api/v1/users/{b_id}", headers=a_headers)
    assert missing.json() == hidden.json()  # existence never leaks
    assert client.get(f"/api/v1/users/{a_id}", headers=a_headers).status_code == 200
    r = client.get(f"/api/v1/users/{b_id}", headers=admin_headers)
    assert r.status_code == 200 and r.json()["id"] == str(b_id) and "password_hash" not in r.json()
    assert client.get(f"/api/v1/users/{uuid.uuid4()}", headers=admin_headers).status_code == 404
    assert client.get(f"/api/v1/users/{b_id}").status_code == 401
