"""The Stripe SDK client built from settings, customers per user, Checkout and portal sessions.

Every call goes through one ``stripe.StripeClient`` whose API base comes from ``BillingSettings``
(tests point it at a local fake server). The SDK's own retries are off: callers decide, and usage
reporting retries on its next run with the same idempotency key.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio.to_thread
import stripe
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from iam_cluster.db.queries import QUERIES
from iam_cluster.errors import IAMError
from iam_cluster.billing.plans import PLANS
from iam_cluster.settings import BillingSettings


class StripeNotConfigured(IAMError):
    """Stripe is not configured on this server (STRIPE_SECRET_KEY is not set)."""

    code = "unavailable"


class StripeFailed(IAMError):
    """Stripe could not be reached or refused the request."""

    code = "unavailable"


def make_client(billing: BillingSettings) -> stripe.StripeClient:
    """A client for ``billing``'s key and API base.

    Raises:
        StripeNotConfigured: no secret key is set.
    """
    if not billing.secret_key:
        raise StripeNotConfigured()
    base = {"api": billing.api_base.rstrip("/")} if billing.api_base else None
    return stripe.StripeClient(billing.secret_key, base_addresses=base, max_network_retries=0)


def price_for(billing: BillingSettings, plan: str) -> str:
    """The Stripe price id of a paid ``plan``."""
    price = billing.price.get(plan) if plan in PLANS and PLANS[plan].paid else None
    if not price:
        raise StripeNotConfigured(f"no Stripe price is configured for plan {plan!r} "
                                  f"(set STRIPE_PRICE_{plan.upper()})")
    return price


def plan_for_price(billing: BillingSettings, price_id: str | None) -> str | None:
    """The plan a Stripe price id sells, or None."""
    return next((plan for plan, price in billing.price.items() if price_id and price == price_id
                 and plan in PLANS and PLANS[plan].paid), None)


async def call(fn, *args: Any, **kwargs: Any) -> Any:
    """Run one blocking SDK call in a worker thread; Stripe errors become ``StripeFailed``."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except stripe.StripeError as exc:
        raise StripeFailed(f"Stripe request failed: {exc.user_message or exc}") from exc


async def ensure_customer(conn: AsyncConnection, client: stripe.StripeClient, user_id: uuid.UUID) -> str:
    """The user's Stripe customer id, creating the customer on first need (one per user).

    The user's row is locked for the transaction, and the creation carries an idempotency key
    derived from the user id, so concurrent or retried requests end with one customer.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES["stripe_lock_user"], {"id": user_id})
        row = await cur.fetchone()
    if row is None:
        raise IAMError("user not found")
    if row["stripe_customer_id"]:
        return row["stripe_customer_id"]
    params: dict[str, Any] = {"email": row["email"], "metadata": {"user_id": str(user_id)}}
    if row["full_name"]:
        params["name"] = row["full_name"]
    customer = await call(client.v1.customers.create, params=params,
                          options={"idempotency_key": f"customer-{user_id}"})
    await conn.execute(QUERIES["stripe_set_customer"], {"id": user_id, "customer_id": customer.id})
    return customer.id


async def checkout_url(conn: AsyncConnection, client: stripe.StripeClient, billing: BillingSettings,
                       user_id: uuid.UUID, plan: str) -> str:
    """A Checkout Session (subscription mode) for ``plan``'s price; returns its URL."""
    price = price_for(billing, plan)
    customer = await ensure_customer(conn, client, user_id)
    session = await call(client.v1.checkout.sessions.create, params={
        "mode": "subscription",
        "customer": customer,
        "line_items": [{"price": price, "quantity": 1}],
        "success_url": billing.success_url,
        "cancel_url": billing.cancel_url,
        "client_reference_id": str(user_id),
        "subscription_data": {"metadata": {"user_id": str(user_id), "plan": plan}},
    })
    return session.url


async def portal_url(conn: AsyncConnection, client: stripe.StripeClient, billing: BillingSettings,
                     user_id: uuid.UUID) -> str:
    """A customer portal session for the user; returns its URL."""
    customer = await ensure_customer(conn, client, user_id)
    session = await call(client.v1.billing_portal.sessions.create,
                         params={"customer": customer, "return_url": billing.success_url})
    return session.url
