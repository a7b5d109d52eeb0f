"""Billing API: the plans on offer and the caller's usage this month (Stripe routes live in billing_stripe)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from litestar import Router, get
from litestar.di import NamedDependency
from psycopg import AsyncConnection

from iam_cluster.billing.plans import PLANS, RATE_TIERS
from iam_cluster.billing.quotas import Usage, current_usage
from iam_cluster.db.rows import User


class RateTier(msgspec.Struct, kw_only=True):
    #: The tier applies up to this many minutes a month; None is open-ended.
    up_to_minutes: int | None
    price_per_minute: Decimal


class PlanOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    price_monthly: Decimal
    #: None is unlimited.
    monthly_minutes: int | None
    currency: str = "usd"


class PlansOut(msgspec.Struct, kw_only=True):
    plans: list[PlanOut]
    #: The per-minute usage rate, tiered on the month's cumulative minutes.
    usage_rate: list[RateTier]
    #: How audio is turned into billable minutes.
    billable_minutes_rounding: str = "audio seconds rounded up to the next 0.1 minute"


@get("/plans")
async def list_plans() -> PlansOut:
    """Every plan with its price and monthly minutes, and the tiered per-minute rate."""
    return PlansOut(
        plans=[PlanOut(id=p.id, name=p.name, price_monthly=p.price_monthly, monthly_minutes=p.monthly_minutes)
               for p in PLANS.values()],
        usage_rate=[RateTier(up_to_minutes=None if c is None else int(c), price_per_minute=r)
                    for c, r in RATE_TIERS])


@get("/usage")
async def get_usage(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> Usage:
    """The caller's minutes this month (UTC), reserved and remaining minutes, all-time total and cost."""
    return await current_usage(conn, current_user.id, current_user.tier)


router = Router(path="/billing", route_handlers=[list_plans, get_usage], tags=["billing"],
                opt={"scope": "billing"})
