"""Stripe webhooks: signature verified, each event id processed once, subscription state onto users."""

from __future__ import annotations

from typing import Any

import stripe
from psycopg import AsyncConnection

from iam_cluster.billing.stripe_client import plan_for_price
from iam_cluster.db.queries import QUERIES
from iam_cluster.errors import IAMError
from iam_cluster.settings import BillingSettings

#: Subscription statuses that keep the paid tier; any other status falls back to free.
PAID_STATUSES = frozenset({"active", "trialing", "past_due"})
HANDLED = frozenset({
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "invoice.paid", "invoice.payment_failed",
})


class InvalidSignature(IAMError):
    """The webhook's Stripe-Signature header does not verify."""

    code = "bad_request"


def verify(payload: bytes, sig_header: str | None, secret: str) -> dict[str, Any]:
    """The event in ``payload`` after checking its signature against ``secret`` (5 minutes tolerance).

    Raises:
        InvalidSignature: missing or wrong signature, stale timestamp, or a body that is not an event.
    """
    if not sig_header:
        raise InvalidSignature("missing Stripe-Signature header")
    try:
        event = stripe.Webhook.construct_event(payload, sig_header, secret)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(f"invalid webhook signature: {exc.user_message or exc}") from exc
    except ValueError as exc:
        raise InvalidSignature("webhook payload is not a JSON event") from exc
    data = event.to_dict()
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise InvalidSignature("webhook payload is not an event")
    return data


def _price_of(subscription: dict[str, Any]) -> str | None:
    items = (subscription.get("items") or {}).get("data") or []
    for item in items:
        price = item.get("price") or {}
        if price.get("id"):
            return price["id"]
    plan = subscription.get("plan") or {}
    return plan.get("id")


def _customer_of(obj: dict[str, Any]) -> str | None:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer


async def handle_event(conn: AsyncConnection, billing: BillingSettings, event: dict[str, Any]) -> bool:
    """Apply ``event`` once, inside the caller's transaction.

    Returns:
        False when the event id was seen before (a replay: nothing changes), True otherwise.
    """
    cur = await conn.execute(QUERIES["stripe_record_event"], {"id": event["id"], "type": event["type"]})
    if await cur.fetchone() is None:
        return False
    kind = event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    customer = _customer_of(obj)
    if customer and kind in HANDLED:
        if kind.startswith("customer.subscription."):
            status = obj.get("status") or ("canceled" if kind.endswith(".deleted") else None)
            plan = plan_for_price(billing, _price_of(obj))
            paid = kind != "customer.subscription.deleted" and status in PAID_STATUSES and plan is not None
            await conn.execute(QUERIES["stripe_set_subscription"], {
                "tier": plan if paid else "free", "status": status,
                "subscription_id": obj.get("id"), "customer_id": customer})
        elif kind == "invoice.paid":
            await conn.execute(QUERIES["stripe_set_subscription_status"],
                               {"status": "active", "customer_id": customer})
        elif kind == "invoice.payment_failed":
            await conn.execute(QUERIES["stripe_set_subscription_status"],
                               {"status": "past_due", "customer_id": customer})
    await conn.execute(QUERIES["stripe_mark_event_processed"], {"id": event["id"]})
    return True
