"""The web app over HTTP (no browser): cookie session, CSRF, security headers, owner-only pages and audio."""

from __future__ import annotations

import re

import pytest

from iam_cluster.web.protect import CSRF_COOKIE, CSRF_HEADER
from iam_cluster.web.session import SESSION_COOKIE


@pytest.fixture
def client(api_settings):
    """The app over HTTPS: the session and CSRF cookies are Secure, as in production."""
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    with TestClient(create_app(api_settings), base_url="https://testserver.local") as c:
        yield c


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


def sign_up(client, email: str = "ada@example.com", password: str = "correct horse 1"):
    """Signs up through the form; returns the page's CSRF token for later unsafe requests."""
    page = client.get("/signup")
    token = csrf_of(page.text)
    r = client.post("/signup", data={"email": email, "password": password, "_csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/meetings/new", r.text
    return token


def test_pages_need_a_session_and_forms_need_the_csrf_token(client):
    r = client.get("/meetings", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/login?next=/meetings"
    page = client.get("/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in page.text and "onclick" not in page.text
    # No token, a forged token: refused before anything happens.
    assert client.post("/signup", data={"email": "x@example.com", "password": "12345678"}).status_code == 403
    assert client.post("/signup", data={"email": "x@example.com", "password": "12345678",
                                        "_csrf_token": "f" * 128}).status_code == 403
    sign_up(client)
    cookie = next(c for c in client.cookies.jar if c.name == SESSION_COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.secure
    assert next(c for c in client.cookies.jar if c.name == CSRF_COOKIE).has_nonstandard_attr("HttpOnly")
    assert client.get("/meetings").status_code == 200


def test_cookie_calls_to_the_api_need_the_csrf_header_and_bearer_calls_do_not(client, make_user):
    token = sign_up(client)
    assert client.get("/api/v1/users/me").json()["email"] == "ada@example.com"
    assert client.post("/api/v1/meetings", json={"title": "no header"}).status_code == 403
    r = client.post("/api/v1/meetings", json={"title": "with header"}, headers={CSRF_HEADER: token})
    assert r.status_code == 201
    # An API client with a bearer token (and no CSRF anything) is unaffected, even with cookies around.
    _, _, _, bearer = make_user()
    r = client.post("/api/v1/meetings", json={"title": "bearer"}, headers=bearer)
    assert r.status_code == 201 and client.get("/api/v1/meetings", headers=bearer).json()["total"] == 1


def test_sign_in_wrong_password_sign_out(client):
    token = sign_up(client)
    client.post("/logout", data={"_csrf_token": token})
    assert client.get("/api/v1/users/me").status_code == 401
    page = client.get("/login")
    token = csrf_of(page.text)
    bad = client.post("/login", data={"email": "ada@example.com", "password": "wrong password",
                                      "_csrf_token": token})
    assert bad.status_code == 401 and "Invalid email or password" in bad.text
    ok = client.post("/login", data={"email": "ADA@example.com", "password": "correct horse 1",
                                     "next": "//evil.example.com", "_csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/meetings"


def test_another_users_meeting_is_a_404_page_and_its_audio_a_404(client, make_user, data_dir):
    other, _, _, bearer = make_user()
    theirs = client.post("/api/v1/meetings", json={"title": "private"}, headers=bearer).json()
    wav = (data_dir / "spk1_snt1.wav").read_bytes()
    assert client.post(f"/api/v1/meetings/{theirs['id']}/upload?filename=a.wav", content=wav,
                       headers=bearer).status_code == 200
    sign_up(client)
    page = client.get(f"/meetings/{theirs['id']}")
    assert page.status_code == 404 and "Not found" in page.text and "private" not in page.text
    assert client.get(f"/api/v1/meetings/{theirs['id']}/audio").status_code == 404


def test_audio_is_served_with_range_requests(client, make_user, data_dir):
    _, _, _, bearer = make_user()
    meeting = client.post("/api/v1/meetings", json={"title": "audio"}, headers=bearer).json()
    url = f"/api/v1/meetings/{meeting['id']}/audio"
    assert client.get(url, headers=bearer).status_code == 404  # no audio yet
    wav = (data_dir / "spk1_snt1.wav").read_bytes()
    client.post(f"/api/v1/meetings/{meeting['id']}/upload?filename=a.wav", content=wav, headers=bearer)
    whole = client.get(url, headers=bearer)
    assert whole.status_code == 200 and whole.content == wav and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"].startswith("audio/wav")
    part = client.get(url, headers={**bearer, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == wav[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(wav)}"
    tail = client.get(url, headers={**bearer, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == wav[-10:]
    open_ended = client.get(url, headers={**bearer, "Range": f"bytes={len(wav) - 5}-"})
    assert open_ended.content == wav[-5:]
    bad = client.get(url, headers={**bearer, "Range": f"bytes={len(wav)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(wav)}"


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-0", (0, 0)), ("bytes=5-", (5, 99)), ("bytes=-5", (95, 99)), ("bytes=90-500", (90, 99)),
    ("bytes=0-1,5-6", None), ("items=0-5", None), (None, None), ("bytes=-", None),
])
def test_byte_range(header, expected):
    from iam_cluster.api.meeting_media import byte_range

    assert byte_range(header, 100) == expected


def test_the_insights_panel_renders_what_the_insights_store_holds():
    """The panel the transcript page shows once a meeting has insights (issue 18's ``Insights`` shape)."""
    from litestar.plugins.jinja import JinjaTemplateEngine

    from iam_cluster.web.render import TEMPLATES, _configure

    engine = JinjaTemplateEngine(directory=TEMPLATES)
    _configure(engine)
    insights = {
        "abstract": "We agreed to ship on Friday.", "sentiment_label": "positive", "questions": [{"text": "When?"}],
        "summary": [{"start": 65.2, "speaker": "SPEAKER_00", "text": "Let's ship on Friday."}],
        "action_items": [{"start": 70.0, "speaker": "SPEAKER_01", "text": "I'll send the report.",
                          "owner": "SPEAKER_01", "due": "by Friday"}],
        "keywords": [{"text": "release"}, {"text": "<script>"}],
        "speakers": [{"speaker": "SPEAKER_00", "talk_share": 0.6, "words_per_minute": 151.2,
                      "sentiment_label": "neutral"}],
    }
    html = engine.get_template("_insights.html").render(
        insights=insights, view={"names": {"SPEAKER_00": "Ada", "SPEAKER_01": "SPEAKER_01"}})
    assert "We agreed to ship on Friday." in html and 'data-t="65.2"' in html and "1:05" in html
    assert "<strong>Ada:</strong>" in html and "(SPEAKER_01, by Friday)" in html and "60%" in html and "WPM" in html
    assert "&lt;script&gt;" in html and "<script>" not in html  # autoescaped
    assert "1 question asked" in html


def test_the_live_socket_takes_the_session_cookie_from_our_own_pages_only(client):
    from litestar.exceptions import WebSocketDisconnect

    sign_up(client)
    cookie = f"{SESSION_COOKIE}={client.cookies.get(SESSION_COOKIE)}"  # the test client's sockets carry no jar
    with client.websocket_connect("/api/v2/messages/ws",
                                  headers={"cookie": cookie, "origin": "https://testserver.local"}) as ws:
        ws.send_text('{"type": "ping"}')
        while (event := ws.receive_json())["type"] != "pong":
            assert event["type"] == "presence"
    for origin in ("https://evil.example", None):  # another site's page (or no Origin): no ambient login
        headers = {"cookie": cookie, **({"origin": origin} if origin else {})}
        with client.websocket_connect("/api/v2/messages/ws", headers=headers) as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 4401
