"""Stripe over HTTP against a local fake Stripe: Checkout, portal, signed webhooks, usage reporting."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import msgspec
import psycopg
import pytest

BASE = "/api/v1/billing"
WEBHOOK_SECRET = "whsec_test_" + "s3cret"


@pytest.fixture
def stripe_settings(api_settings, fake_stripe):
    return msgspec.structs.replace(api_settings, billing=msgspec.structs.replace(
        api_settings.billing, secret_key="sk_test_fake", webhook_secret=WEBHOOK_SECRET,
        api_base=fake_stripe.url, price={"pro": "price_pro_test", "enterprise": "price_ent_test"}))


@pytest.fixture
def stripe_app(stripe_settings):
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    with TestClient(create_app(stripe_settings)) as c:
        yield c


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(kind: str, obj: dict, event_id: str | None = None) -> bytes:
    return json.dumps({"id": event_id or f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": kind,
                       "api_version": "2024-06-20", "created": int(time.time()), "livemode": False,
                       "data": {"object": obj}}).encode()


def subscription(customer: str, status: str = "active", price: str = "price_pro_test", sub_id: str = "sub_1") -> dict:
    return {"id": sub_id, "object": "subscription", "customer": customer, "status": status,
            "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price, "object": "price"}}]}}


def post_event(client, payload: bytes, signature: str | None = None):
    return client.post(f"{BASE}/webhook", content=payload,
                       headers={"Stripe-Signature": signature or sign(payload), "Content-Type": "application/json"})


def user_state(url, user_id) -> tuple:
    with psycopg.connect(url) as c:
        return c.execute("SELECT tier, subscription_status, stripe_subscription_id FROM users WHERE id = %s",
                         (user_id,)).fetchone()


def with_customer(url, user_id, customer="cus_test_1") -> str:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("UPDATE users SET stripe_customer_id = %s WHERE id = %s", (customer, user_id))
    return customer


def test_subscribe_creates_one_customer_and_a_checkout_session(stripe_app, make_user, fake_stripe, stripe_settings):
    user_id, email, _, headers = make_user()
    r = stripe_app.post(f"{BASE}/subscribe", json={"plan": "pro"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    r = stripe_app.post(f"{BASE}/subscribe", json={"plan": "enterprise"}, headers=headers)
    assert r.status_code == 200, r.text

    (customer,) = fake_stripe.to("/v1/customers")
    assert customer.form["email"] == email and customer.form["metadata[user_id]"] == str(user_id)
    assert customer.headers["authorization"] == "Bearer sk_test_fake"
    with psycopg.connect(stripe_settings.database.url) as c:
        (stored,) = c.execute("SELECT stripe_customer_id FROM users WHERE id = %s", (user_id,)).fetchone()
    assert stored and stored.startswith("cus_")
    sessions = fake_stripe.to("/v1/checkout/sessions")
    assert [s.form["line_items[0][price]"] for s in sessions] == ["price_pro_test", "price_ent_test"]
    assert all(s.form["customer"] == stored and s.form["mode"] == "subscription" for s in sessions)
    assert sessions[0].form["success_url"] == stripe_settings.billing.success_url


def test_subscribe_rejects_unknown_plan(stripe_app, make_user, fake_stripe):
    _, _, _, headers = make_user()
    r = stripe_app.post(f"{BASE}/subscribe", json={"plan": "free"}, headers=headers)
    assert r.status_code == 400 and fake_stripe.calls == []
    assert stripe_app.post(f"{BASE}/subscribe", json={"plan": "pro"}).status_code == 401


def test_portal(stripe_app, make_user, fake_stripe, stripe_settings):
    user_id, _, _, headers = make_user()
    customer = with_customer(stripe_settings.database.url, user_id, "cus_existing")
    r = stripe_app.post(f"{BASE}/portal", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["url"].startswith("https://billing.stripe.com/p/session/")
    assert fake_stripe.to("/v1/customers") == []  # the existing customer is reused
    (session,) = fake_stripe.to("/v1/billing_portal/sessions")
    assert session.form["customer"] == customer


def test_stripe_failure_is_503_and_creates_nothing(stripe_app, make_user, fake_stripe, stripe_settings):
    user_id, _, _, headers = make_user()
    fake_stripe.fail_next(1)
    r = stripe_app.post(f"{BASE}/subscribe", json={"plan": "pro"}, headers=headers)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert "Stripe" in r.json()["error"]["message"]
    with psycopg.connect(stripe_settings.database.url) as c:
        assert c.execute("SELECT stripe_customer_id FROM users WHERE id = %s", (user_id,)).fetchone() == (None,)
    assert fake_stripe.calls == [] and len(fake_stripe.failed) == 1


def test_subscription_events_set_tier_and_status(stripe_app, make_user, stripe_settings):
    url = stripe_settings.database.url
    user_id, *_ = make_user()
    customer = with_customer(url, user_id)
    steps = [
        (event("customer.subscription.created", subscription(customer, "incomplete")), ("free", "incomplete")),
        (event("customer.subscription.updated", subscription(customer, "active")), ("pro", "active")),
        (event("invoice.payment_failed", {"id": "in_1", "object": "invoice", "customer": customer}), ("pro", "past_due")),
        (event("invoice.paid", {"id": "in_2", "object": "invoice", "customer": customer}), ("pro", "active")),
        (event("customer.subscription.updated", subscription(customer, "active", "price_ent_test")), ("enterprise", "active")),
        (event("customer.subscription.deleted", subscription(customer, "canceled", "price_ent_test")), ("free", "canceled")),
    ]
    for payload, expected in steps:
        r = post_event(stripe_app, payload)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": True, "processed": True}
        assert user_state(url, user_id)[:2] == expected
    assert user_state(url, user_id)[2] == "sub_1"
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL").fetchone()[0] == len(steps)


def test_bad_signature_is_400_and_changes_nothing(stripe_app, make_user, stripe_settings):
    url = stripe_settings.database.url
    user_id, *_ = make_user()
    customer = with_customer(url, user_id)
    payload = event("customer.subscription.created", subscription(customer))
    for signature in [sign(payload, "whsec_wrong"), sign(payload + b" "), "t=1,v1=deadbeef",
                      sign(payload, t=int(time.time()) - 3600), "garbage"]:
        r = post_event(stripe_app, payload, signature)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bad_request"
    r = stripe_app.post(f"{BASE}/webhook", content=payload)  # no header at all
    assert r.status_code == 400
    assert user_state(url, user_id) == ("free", None, None)
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM stripe_events").fetchone()[0] == 0


def test_replayed_event_changes_nothing(stripe_app, make_user, stripe_settings):
    url = stripe_settings.database.url
    user_id, *_ = make_user()
    customer = with_customer(url, user_id)
    first = event("customer.subscription.created", subscription(customer), "evt_same")
    assert post_event(stripe_app, first).json() == {"received": True, "processed": True}
    assert user_state(url, user_id)[:2] == ("pro", "active")
    with psycopg.connect(url, autocommit=True) as c:  # changed since, e.g. by a later event
        c.execute("UPDATE users SET tier = 'enterprise' WHERE id = %s", (user_id,))
    for payload in [first, event("customer.subscription.deleted", subscription(customer, "canceled"), "evt_same")]:
        r = post_event(stripe_app, payload)
        assert r.status_code == 200 and r.json() == {"received": True, "processed": False}
    assert user_state(url, user_id)[:2] == ("enterprise", "active")
    with psycopg.connect(url) as c:
        assert c.execute("SELECT id, type FROM stripe_events").fetchall() == [
            ("evt_same", "customer.subscription.created")]


def test_without_stripe_key_routes_answer_503(client, make_user, api_settings):
    assert api_settings.billing.secret_key is None
    _, _, _, headers = make_user()
    for path, kwargs in [("/subscribe", {"json": {"plan": "pro"}}), ("/portal", {}), ("/webhook", {"content": b"{}"})]:
        r = client.post(f"{BASE}{path}", headers=headers, **kwargs)
        assert r.status_code == 503, (path, r.text)
        err = r.json()["error"]
        assert err["code"] == "unavailable" and "STRIPE_SECRET_KEY" in err["message"]


# --- usage sync ----------------------------------------------------------------------------------

def add_usage(url, n: int, minutes=("1.0", "2.5", "0.5")) -> list[str]:
    with psycopg.connect(url, autocommit=True) as c:
        (user_id,) = c.execute("INSERT INTO users (email, password_hash, stripe_customer_id) "
                               "VALUES (%s, 'x', 'cus_usage') RETURNING id", (f"u{uuid.uuid4().hex[:8]}@x.io",)).fetchone()
        (other,) = c.execute("INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
                             (f"n{uuid.uuid4().hex[:8]}@x.io",)).fetchone()
        ids = [str(c.execute("INSERT INTO usage_records (user_id, job_id, audio_seconds, billable_minutes, cost) "
                             "VALUES (%s, %s, 60, %s, 0.1) RETURNING id",
                             (user_id, uuid.uuid4(), minutes[i % len(minutes)])).fetchone()[0]) for i in range(n)]
        # A user without a Stripe customer is not reported.
        c.execute("INSERT INTO usage_records (user_id, job_id, audio_seconds, billable_minutes, cost) "
                  "VALUES (%s, %s, 60, 1, 0.1)", (other, uuid.uuid4()))
    return ids


def meter_client(fake_stripe):
    from iam_cluster.billing.stripe_client import make_client
    from iam_cluster.settings import BillingSettings

    return make_client(BillingSettings(secret_key="sk_test_fake", api_base=fake_stripe.url))


@pytest.mark.anyio
async def test_usage_sync_interrupted_by_500s_delivers_each_row_once(database_url, fake_stripe):
    from iam_cluster.billing.usage_sync import sync_usage

    ids = add_usage(database_url, 10)
    client = meter_client(fake_stripe)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # A run that dies before committing: Stripe saw the events, the ledger did not record it.
        class Crash(Exception):
            pass

        with pytest.raises(Crash):
            async with conn.transaction():
                assert len((await sync_usage(conn, client, 3)).reported) == 3
                raise Crash
        fake_stripe.fail_next(4)
        for _ in range(20):
            result = await sync_usage(conn, client, 4)
            if not result.reported and not result.failed:
                break
        rows = await (await conn.execute(
            "SELECT r.id::text, r.stripe_reported_at IS NOT NULL, r.stripe_attempts, r.stripe_last_error "
            "FROM usage_records r JOIN users u ON u.id = r.user_id WHERE u.stripe_customer_id IS NOT NULL")).fetchall()
        unreported = (await (await conn.execute(
            "SELECT count(*) FROM usage_records WHERE stripe_reported_at IS NULL")).fetchone())[0]

    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(r[1] and r[3] is None for r in rows)
    assert any(r[2] > 1 for r in rows)  # some rows were retried after a failure
    assert unreported == 1  # the user without a customer
    assert len(fake_stripe.failed) == 4
    events = fake_stripe.to("/v1/billing/meter_events")
    identifiers = [e.form["identifier"] for e in events]
    assert len(identifiers) == len(set(identifiers)) == len(ids)  # each row delivered exactly once
    assert set(identifiers) == set(ids)
    assert {e.idempotency_key for e in events} == {f"usage-{i}" for i in ids}
    assert len(fake_stripe.replays) == 3  # the crashed run's rows, answered from the idempotency cache
    assert all(e.form["event_name"] == "transcription_minutes" and e.form["payload[stripe_customer_id]"] == "cus_usage"
               for e in events)
    assert sorted({e.form["payload[value]"] for e in events}) == ["0.5", "1", "2.5"]


@pytest.mark.anyio
async def test_concurrent_usage_syncs_skip_each_others_rows(database_url, fake_stripe):
    from iam_cluster.billing.usage_sync import sync_usage

    ids = add_usage(database_url, 6)
    client = meter_client(fake_stripe)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as a, \
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as b:
        async with a.transaction():
            first = await sync_usage(a, client, 4)  # its row locks are held until this block ends
            second = await sync_usage(b, client, 100)
        assert not set(first.reported) & set(second.reported)
        assert len(first.reported) == 4 and len(second.reported) == 2
        assert (await sync_usage(b, client, 100)).reported == []
    identifiers = [e.form["identifier"] for e in fake_stripe.to("/v1/billing/meter_events")]
    assert sorted(identifiers) == sorted(ids)


@pytest.mark.anyio
async def test_billing_sync_command_reports_everything_once(database_url, fake_stripe):
    import msgspec

    from iam_cluster.billing.usage_sync import run_sync
    from iam_cluster.settings import load_settings

    ids = add_usage(database_url, 5)
    base = load_settings({})
    settings = msgspec.structs.replace(
        base, database=msgspec.structs.replace(base.database, url=database_url),
        billing=msgspec.structs.replace(base.billing, secret_key="sk_test_fake", api_base=fake_stripe.url),
    )
    assert await run_sync(settings, once=True, batch=2) == 0
    assert await run_sync(settings, once=True, batch=2) == 0  # nothing left: nothing sent twice
    identifiers = [e.form["identifier"] for e in fake_stripe.to("/v1/billing/meter_events")]
    assert sorted(identifiers) == sorted(ids)
    assert await run_sync(msgspec.structs.replace(settings, billing=base.billing), once=True) == 2  # no key
