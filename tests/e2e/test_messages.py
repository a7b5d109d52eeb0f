"""Messages and notifications over HTTP: per-side views, ownership, bulk actions, stats, limits."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.fixtures.services import window_with

BASE = "/api/v2/messages"
NOTES = "/api/v2/notifications"


def send(client, headers, to, subject="Hello", body="Hi there", **extra):
    r = client.post(BASE, json={"recipient_id": str(to), "subject": subject, "body": body, **extra},
                    headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def listing(client, headers, **params) -> list[dict]:
    r = client.get(BASE, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def ids(items) -> list[str]:
    return [m["id"] for m in items]


def stats(client, headers) -> dict:
    r = client.get(f"{BASE}/stats/summary", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_send_and_per_side_views(client, make_user):
    a_id, _, _, a = make_user()
    b_id, b_email, _, b = make_user()
    r = client.post(BASE, json={"recipient_email": b_email.upper(), "subject": "Plan", "body": "Agenda"},
                    headers=a)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["sender_id"] == str(a_id) and m["recipient_id"] == str(b_id) and m["direction"] == "sent"

    assert ids(listing(client, b)) == [m["id"]]  # inbox
    assert listing(client, a) == []
    assert ids(listing(client, a, folder="sent")) == [m["id"]]
    assert listing(client, b, folder="sent") == []
    got = client.get(f"{BASE}/{m['id']}", headers=b).json()
    assert got["is_read"] is False and got["direction"] == "received" and got["body"] == "Agenda"
    assert ids(listing(client, b, unread="true")) == [m["id"]]

    # The recipient reads, stars and archives: none of it shows in the sender's view.
    r = client.patch(f"{BASE}/{m['id']}", json={"is_read": True, "is_starred": True, "is_archived": True},
                     headers=b)
    assert r.status_code == 200, r.text
    assert r.json() | {} == {**got, "is_read": True, "is_starred": True, "is_archived": True}
    assert listing(client, b, unread="true") == []
    assert listing(client, b) == []  # archived leaves the inbox
    assert ids(listing(client, b, folder="archived")) == [m["id"]]
    assert ids(listing(client, b, folder="starred")) == [m["id"]]
    seen_by_a = client.get(f"{BASE}/{m['id']}", headers=a).json()
    assert (seen_by_a["is_starred"], seen_by_a["is_archived"], seen_by_a["is_read"]) == (False, False, True)
    assert listing(client, a, folder="starred") == [] and listing(client, a, folder="archived") == []
    assert ids(listing(client, a, folder="sent")) == [m["id"]]

    # The sender stars: the recipient's view does not change.
    client.patch(f"{BASE}/{m['id']}", json={"is_starred": True, "is_archived": False}, headers=a)
    client.patch(f"{BASE}/{m['id']}", json={"is_starred": False}, headers=b)
    assert client.get(f"{BASE}/{m['id']}", headers=a).json()["is_starred"] is True
    assert client.get(f"{BASE}/{m['id']}", headers=b).json()["is_starred"] is False
    client.patch(f"{BASE}/{m['id']}", json={"is_archived": False, "is_read": False}, headers=b)
    assert client.get(f"{BASE}/{m['id']}", headers=b).json()["is_read"] is False
    assert client.get(f"{BASE}/{m['id']}", headers=a).json()["is_read"] is True


def test_delete_per_side_then_row_removed(client, make_user, api_settings):
    _, _, _, a = make_user()
    b_id, _, _, b = make_user()
    m = send(client, a, b_id)
    assert client.delete(f"{BASE}/{m['id']}", headers=b).status_code == 204
    assert client.get(f"{BASE}/{m['id']}", headers=b).status_code == 404
    assert client.delete(f"{BASE}/{m['id']}", headers=b).status_code == 404
    assert client.patch(f"{BASE}/{m['id']}", json={"is_read": True}, headers=b).status_code == 404
    assert listing(client, b) == []
    assert client.get(f"{BASE}/{m['id']}", headers=a).status_code == 200  # the sender still has it
    assert ids(listing(client, a, folder="sent")) == [m["id"]]
    with psycopg.connect(api_settings.database.url) as c:
        assert c.execute("SELECT count(*) FROM messages WHERE id = %s", (m["id"],)).fetchone()[0] == 1
    assert client.delete(f"{BASE}/{m['id']}", headers=a).status_code == 204
    with psycopg.connect(api_settings.database.url) as c:
        assert c.execute("SELECT count(*) FROM messages WHERE id = %s", (m["id"],)).fetchone()[0] == 0


def test_third_user_gets_404_everywhere(client, make_user):
    _, _, _, a = make_user()
    b_id, _, _, b = make_user()
    _, _, _, c = make_user()
    m = send(client, a, b_id)
    url = f"{BASE}/{m['id']}"
    for r in (client.get(url, headers=c), client.patch(url, json={"is_read": True}, headers=c),
              client.patch(url, json={"is_starred": True}, headers=c), client.delete(url, headers=c),
              client.get(f"{BASE}/{uuid.uuid4()}", headers=a)):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    for folder in ("inbox", "sent", "starred", "archived"):
        assert listing(client, c, folder=folder) == []
    r = client.put(f"{BASE}/bulk", json={"ids": [m["id"]], "action": "delete"}, headers=c)
    assert r.status_code == 200 and r.json()["changed"] == 0
    assert stats(client, c) == {"total": 0, "unread": 0, "starred": 0, "archived": 0, "sent": 0}
    assert client.get(url, headers=b).json()["is_read"] is False
    assert client.get(BASE, headers={}).status_code == 401


def test_bulk_touches_only_the_callers_and_stats_match(client, make_user):
    _, _, _, a = make_user()
    b_id, _, _, b = make_user()
    c_id, _, _, c = make_user()
    to_b = [send(client, a, b_id, subject=f"b{i}")["id"] for i in range(3)]
    to_c = send(client, a, c_id)["id"]
    from_b = send(client, b, c_id)["id"]  # b's sent message

    r = client.put(f"{BASE}/bulk", json={"ids": to_b + [to_c, from_b], "action": "read"}, headers=b)
    assert r.json() == {"action": "read", "changed": 3}
    assert client.get(f"{BASE}/{to_c}", headers=c).json()["is_read"] is False
    assert client.get(f"{BASE}/{from_b}", headers=c).json()["is_read"] is False
    r = client.put(f"{BASE}/bulk", json={"ids": to_b, "action": "read"}, headers=b)
    assert r.json()["changed"] == 0  # already read
    assert client.put(f"{BASE}/bulk", json={"ids": to_b[:1], "action": "unread"}, headers=b).json()["changed"] == 1

    r = client.put(f"{BASE}/bulk", json={"ids": [to_b[0], to_c, from_b], "action": "star"}, headers=b)
    assert r.json()["changed"] == 2  # to_c is not b's
    assert client.get(f"{BASE}/{to_c}", headers=c).json()["is_starred"] is False
    assert client.get(f"{BASE}/{from_b}", headers=c).json()["is_starred"] is False
    assert client.put(f"{BASE}/bulk", json={"ids": [to_b[0]], "action": "star"}, headers=b).json()["changed"] == 0
    assert client.put(f"{BASE}/bulk", json={"ids": [to_b[1]], "action": "archive"}, headers=b).json()["changed"] == 1
    assert client.put(f"{BASE}/bulk", json={"ids": [to_b[1]], "action": "unarchive"},
                      headers=b).json()["changed"] == 1
    assert client.put(f"{BASE}/bulk", json={"ids": [to_b[2]], "action": "archive"}, headers=b).json()["changed"] == 1
    assert stats(client, b) == {"total": 3, "unread": 1, "starred": 2, "archived": 1, "sent": 1}
    assert stats(client, a) == {"total": 0, "unread": 0, "starred": 0, "archived": 0, "sent": 4}
    assert stats(client, c) == {"total": 2, "unread": 2, "starred": 0, "archived": 0, "sent": 0}

    r = client.put(f"{BASE}/bulk", json={"ids": [to_b[0], to_c], "action": "delete"}, headers=b)
    assert r.json()["changed"] == 1
    assert client.get(f"{BASE}/{to_c}", headers=c).status_code == 200
    assert stats(client, b) == {"total": 2, "unread": 0, "starred": 1, "archived": 1, "sent": 1}
    assert client.put(f"{BASE}/bulk", json={"ids": [to_b[0]], "action": "unstar"}, headers=b).json()["changed"] == 0

    for bad in ({"ids": [], "action": "read"}, {"ids": [str(uuid.uuid4())] * 101, "action": "read"},
                {"ids": [to_c], "action": "explode"}, {"ids": [to_c], "action": "read", "x": 1}):
        r = client.put(f"{BASE}/bulk", json=bad, headers=b)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bad_request"


def test_search_and_cursor_pagination(client, make_user):
    _, _, _, a = make_user()
    b_id, _, _, b = make_user()
    sent = [send(client, a, b_id, subject=f"Report {i}", body=f"figure {i} of 100%")["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        r = client.get(BASE, params={"limit": 3, **({"cursor": cursor} if cursor else {})}, headers=b)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += ids(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sent[::-1]  # newest first, each once
    assert ids(listing(client, b, q="report 3")) == [sent[3]]
    assert ids(listing(client, b, q="FIGURE 5")) == [sent[5]]
    assert len(listing(client, b, q="100%")) == 7 and listing(client, b, q="1_0") == []
    assert listing(client, b, q="nothing like it") == []
    assert client.get(BASE, params={"cursor": "not-a-cursor"}, headers=b).status_code == 400
    assert client.get(BASE, params={"limit": 101}, headers=b).status_code == 400
    assert client.get(BASE, params={"folder": "trash"}, headers=b).status_code == 400


def test_validation_errors(client, make_user, api_settings):
    a_id, _, _, a = make_user()
    b_id, b_email, _, _ = make_user()
    cases = [
        ({"recipient_id": str(b_id), "subject": "x" * 201, "body": "hi"}, 400, "bad_request"),
        ({"recipient_id": str(b_id), "body": "x" * 10_001}, 400, "bad_request"),
        ({"recipient_id": str(b_id), "body": ""}, 400, "bad_request"),
        ({"recipient_id": str(b_id), "body": "hi", "cc": "someone"}, 400, "bad_request"),
        ({"body": "hi"}, 400, "bad_request"),
        ({"recipient_id": str(b_id), "recipient_email": b_email, "body": "hi"}, 400, "bad_request"),
        ({"recipient_id": str(a_id), "body": "hi"}, 400, "bad_request"),
        ({"recipient_id": str(uuid.uuid4()), "body": "hi"}, 404, "not_found"),
        ({"recipient_email": "nobody@example.com", "body": "hi"}, 404, "not_found"),
    ]
    for payload, status, code in cases:
        r = client.post(BASE, json=payload, headers=a)
        assert r.status_code == status, (payload, r.text)
        assert r.json()["error"]["code"] == code
    with psycopg.connect(api_settings.database.url, autocommit=True) as c:
        c.execute("UPDATE users SET is_active = false WHERE id = %s", (b_id,))
    for payload in ({"recipient_id": str(b_id), "body": "hi"}, {"recipient_email": b_email, "body": "hi"}):
        r = client.post(BASE, json=payload, headers=a)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert stats(client, a)["sent"] == 0
    # At the limits is fine.
    with psycopg.connect(api_settings.database.url, autocommit=True) as c:
        c.execute("UPDATE users SET is_active = true WHERE id = %s", (b_id,))
    m = send(client, a, b_id, subject="s" * 200, body="b" * 10_000)
    assert len(m["subject"]) == 200 and len(m["body"]) == 10_000


def test_body_returned_verbatim_in_json(client, make_user):
    _, _, _, a = make_user()
    b_id, _, _, b = make_user()
    body = '<script>alert("x")</script> & <b>bold</b> \u2603'
    m = send(client, a, b_id, subject="<img src=x onerror=alert(1)>", body=body)
    r = client.get(f"{BASE}/{m['id']}", headers=b)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["body"] == body and r.json()["subject"] == "<img src=x onerror=alert(1)>"
    assert listing(client, b)[0]["body"] == body


def test_send_rate_limit(client, make_user, monkeypatch):
    from iam_cluster.api import messages

    monkeypatch.setattr(messages, "SEND_LIMIT_PER_MINUTE", 3)
    _, _, _, a = make_user()
    b_id, _, _, b = make_user()
    window_with(20, messages.SEND_WINDOW_S)  # the four sends in one window
    for _ in range(3):
        send(client, a, b_id)
    r = client.post(BASE, json={"recipient_id": str(b_id), "body": "one too many"}, headers=a)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert len(listing(client, b)) == 3
    send(client, b, uuid.UUID(listing(client, b)[0]["sender_id"]))  # another user's budget is separate
    assert client.get(BASE, headers=a).status_code == 200  # only sending is limited


def test_notifications(client, make_user):
    a_id, a_email, _, a = make_user()
    b_id, _, _, b = make_user()
    m1 = send(client, a, b_id, subject="First")
    m2 = send(client, a, b_id, subject="Second")
    # Flags kept per side never show up as notifications.
    client.patch(f"{BASE}/{m1['id']}", json={"is_starred": True, "is_archived": True}, headers=b)
    client.patch(f"{BASE}/{m1['id']}", json={"is_starred": True}, headers=a)

    r = client.get(NOTES, headers=b)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 2 and page["unread"] == 2
    first, second = page["items"][1], page["items"][0]
    assert first["kind"] == "new_message" and first["is_read"] is False
    assert first["payload"] == {"message_id": m1["id"], "sender_id": str(a_id), "sender_email": a_email,
                                "subject": "First"}
    assert second["payload"]["message_id"] == m2["id"]
    assert client.get(NOTES, headers=a).json() == {"items": [], "total": 0, "unread": 0, "limit": 20, "offset": 0}

    # Another user cannot read b's notification.
    assert client.post(f"{NOTES}/{first['id']}/read", headers=a).status_code == 404
    assert client.post(f"{NOTES}/{uuid.uuid4()}/read", headers=b).status_code == 404
    r = client.post(f"{NOTES}/{first['id']}/read", headers=b)
    assert r.status_code == 200 and r.json()["is_read"] is True
    unread = client.get(NOTES, params={"unread": "true"}, headers=b).json()
    assert [n["id"] for n in unread["items"]] == [second["id"]] and unread["unread"] == 1
    page = client.get(NOTES, params={"limit": 1, "offset": 1}, headers=b).json()
    assert [n["id"] for n in page["items"]] == [first["id"]] and page["total"] == 2

    assert client.post(f"{NOTES}/read-all", headers=b).json() == {"changed": 1}
    assert client.post(f"{NOTES}/read-all", headers=b).json() == {"changed": 0}
    assert client.get(NOTES, params={"unread": "true"}, headers=b).json()["items"] == []


def test_new_message_publishes_events(client, make_user, api_settings):
    import msgspec
    import redis

    from iam_cluster import events

    _, _, _, a = make_user()
    b_id, _, _, _ = make_user()
    r = redis.Redis.from_url(api_settings.redis.url)
    sub = r.pubsub()
    sub.subscribe(events.channel(api_settings.redis.key_prefix, b_id))
    assert sub.get_message(timeout=2)["type"] == "subscribe"
    m = send(client, a, b_id, subject="Ping", body="<b>x</b>")
    got = []
    for _ in range(20):
        msg = sub.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            got.append(msgspec.json.decode(msg["data"]))
        if len(got) == 2:
            break
    sub.close()
    r.close()
    assert [e["type"] for e in got] == ["new_message", "notification"]
    assert got[0]["data"]["id"] == m["id"] and got[0]["data"]["subject"] == "Ping"
    assert got[1]["data"]["kind"] == "new_message" and got[1]["data"]["payload"]["message_id"] == m["id"]


@pytest.mark.parametrize("path", [BASE, f"{BASE}/stats/summary", NOTES])
def test_requires_auth(client, path):
    r = client.get(path)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
