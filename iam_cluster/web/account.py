"""Account pages: the plan, this month's minutes, upgrades through Stripe Checkout; API keys."""

from __future__ import annotations

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template
from psycopg import AsyncConnection

from iam_cluster.api import billing as api
from iam_cluster.api.errors import APIError
from iam_cluster.api.security import SCOPES
from iam_cluster.billing.plans import PLANS, plan_for
from iam_cluster.db.rows import User
from iam_cluster.settings import Settings

NOTICES = {
    "success": "Thank you: your subscription is being set up. The plan changes as soon as Stripe confirms it.",
    "cancel": "Checkout was cancelled; nothing changed.",
}


async def _billing(request: Request, conn, viewer: User, settings: Settings, notice: str | None) -> Template:
    from iam_cluster.web.render import page

    usage = await api.get_usage.fn(conn=conn, current_user=viewer)
    stripe = bool(settings.billing.secret_key)
    current = plan_for(viewer.tier)
    plans = [{"plan": p, "current": p.id == current.id,
              "can_buy": stripe and p.paid and p.id != current.id and p.id in settings.billing.price}
             for p in PLANS.values()]
    used = float(usage.minutes_this_month + usage.reserved_minutes)
    share = min(1.0, used / usage.included_minutes) if usage.included_minutes else None
    return page("billing.html", request, usage=usage, plans=plans, current=current, stripe=stripe, share=share,
                portal=stripe and viewer.stripe_customer_id is not None, notice=NOTICES.get(notice or ""))


@get("/billing")
async def billing_page(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
                       settings: NamedDependency[Settings]) -> Template:
    return await _billing(request, conn, viewer, settings, None)


@get("/billing/{outcome:str}")
async def billing_return(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
                         settings: NamedDependency[Settings], outcome: FromPath[str]) -> Template:
    """Where Stripe Checkout sends the user back (``STRIPE_SUCCESS_URL`` / ``STRIPE_CANCEL_URL``)."""
    if outcome not in NOTICES:
        raise APIError("not_found", "no such page")
    return await _billing(request, conn, viewer, settings, outcome)


@get("/api-keys")
async def api_keys_page(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User]) -> Template:
    """The viewer's API keys; creating and revoking go to the REST API from ``api_keys.js``."""
    from iam_cluster.api import api_keys
    from iam_cluster.web.render import page

    keys = await api_keys.list_api_keys.fn(conn=conn, current_user=viewer)
    return page("api_keys.html", request, keys=keys, scopes=SCOPES)


handlers = [billing_page, billing_return, api_keys_page]
