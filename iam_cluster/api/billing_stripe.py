"""Stripe routes under /billing: Checkout subscription, customer portal, and the webhook.

Without a Stripe secret key (or webhook secret) these routes answer 503 ``unavailable`` with the
reason; metering, quotas and plans (``api/billing.py``) work without Stripe.
"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK
from psycopg import AsyncConnection

from iam_cluster.api.errors import body
from iam_cluster.billing import stripe_client, webhooks
from iam_cluster.billing.plans import PaidPlan
from iam_cluster.billing.stripe_client import StripeFailed, StripeNotConfigured
from iam_cluster.db.rows import User
from iam_cluster.settings import Settings


class SubscribeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    plan: PaidPlan


class SessionOut(msgspec.Struct, kw_only=True):
    url: str


class WebhookAck(msgspec.Struct, kw_only=True):
    received: bool = True
    #: False for a replayed event id (acknowledged, nothing changed).
    processed: bool


@post("/subscribe", status_code=HTTP_200_OK)
async def subscribe(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                    settings: NamedDependency[Settings], data: JSONBody[SubscribeRequest]) -> SessionOut:
    """A Stripe Checkout Session for the plan's price; redirect the user to ``url``."""
    client = stripe_client.make_client(settings.billing)
    url = await stripe_client.checkout_url(conn, client, settings.billing, current_user.id, data.plan)
    return SessionOut(url=url)


@post("/portal", status_code=HTTP_200_OK)
async def portal(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                 settings: NamedDependency[Settings]) -> SessionOut:
    """A Stripe customer portal session (manage or cancel the subscription)."""
    client = stripe_client.make_client(settings.billing)
    return SessionOut(url=await stripe_client.portal_url(conn, client, settings.billing, current_user.id))


@post("/webhook", status_code=HTTP_200_OK)
async def webhook(request: Request, conn: NamedDependency[AsyncConnection],
                  settings: NamedDependency[Settings]) -> WebhookAck:
    """Stripe events, signature-verified; each event id is applied once (replays are acknowledged)."""
    secret = settings.billing.webhook_secret
    if not settings.billing.secret_key or not secret:
        raise StripeNotConfigured("Stripe webhooks are not configured on this server "
                                  "(STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set)")
    event = webhooks.verify(await request.body(), request.headers.get("stripe-signature"), secret)
    return WebhookAck(processed=await webhooks.handle_event(conn, settings.billing, event))


def _stripe_unavailable(request: Request, exc: StripeNotConfigured | StripeFailed) -> Response:
    # The app-wide handler hides 5xx messages; here the reason is the point of the answer.
    return Response(body("unavailable", exc.message, 503), status_code=503)


def _bad_signature(request: Request, exc: webhooks.InvalidSignature) -> Response:
    return Response(body("bad_request", exc.message, 400), status_code=400)


router = Router(path="/billing", route_handlers=[subscribe, portal, webhook], tags=["billing"],
                opt={"scope": "billing"},
                exception_handlers={StripeNotConfigured: _stripe_unavailable, StripeFailed: _stripe_unavailable,
                                    webhooks.InvalidSignature: _bad_signature})
