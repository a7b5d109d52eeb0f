"""Plans (free, pro, enterprise), billable minutes and the tiered per-minute rate.

Billable minutes are audio seconds rounded **up to the next tenth of a minute** (6 seconds):
a 61-second recording bills 1.1 minutes, a 3.2-second clip 0.1. Quotas and the ledger both use
this figure, so what a job reserves at submission is what it is billed for the same audio — except
that a recording in which no speech was found bills one unit (0.1 minute) at most.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal
from decimal import ROUND_HALF_UP, Decimal

import msgspec

#: Smallest billed unit, in minutes.
MINUTE_STEP = Decimal("0.1")
#: The tiered usage rate: ``(minutes up to, dollars per minute)``; None is the open-ended last tier.
RATE_TIERS: tuple[tuple[Decimal | None, Decimal], ...] = (
    (Decimal(100), Decimal("0.10")),
    (Decimal(500), Decimal("0.08")),
    (None, Decimal("0.06")),
)


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription plan; ``monthly_minutes`` None is unlimited."""

    id: str
    name: str
    price_monthly: Decimal
    monthly_minutes: int | None

    @property
    def paid(self) -> bool:
        """Whether the plan is sold through Stripe (its price id is ``STRIPE_PRICE_<ID>``)."""
        return self.price_monthly > 0


PLANS: dict[str, Plan] = {
    "free": Plan(id="free", name="Free", price_monthly=Decimal("0"), monthly_minutes=60),
    "pro": Plan(id="pro", name="Pro", price_monthly=Decimal("29"), monthly_minutes=500),
    "enterprise": Plan(id="enterprise", name="Enterprise", price_monthly=Decimal("99"), monthly_minutes=None),
}


#: The plans sold through Stripe, by id (the only place plan identity is spelled).
PaidPlan = Literal[tuple(p.id for p in PLANS.values() if p.paid)]  # type: ignore[valid-type]


def plan_for(tier: str | None) -> Plan:
    """The plan of a user's ``tier``; an unknown or empty tier gets the free plan."""
    return PLANS.get(tier or "free", PLANS["free"])


#: A recording in which no speech was found bills at most this many seconds (the smallest unit).
NO_SPEECH_SECONDS = 6.0


def billable_seconds(transcript) -> float:
    """What a finished transcription bills: its audio length, or ``NO_SPEECH_SECONDS`` at most when
    the VAD found no speech in it (hours of silence are not billed as hours)."""
    if transcript.speech_duration <= 0:
        return min(transcript.duration, NO_SPEECH_SECONDS)
    return transcript.duration


def billable_minutes(audio_seconds: float | None) -> Decimal:
    """Audio seconds as billable minutes, rounded up to a tenth of a minute (0 for none)."""
    if not audio_seconds or audio_seconds <= 0:
        return Decimal("0.0")
    # round() first so float noise (60.000000001 s) does not add a whole tenth
    tenths = math.ceil(round(audio_seconds / 6.0, 6))
    return Decimal(tenths) / 10


def tiered_cost(minutes: Decimal, already_used: Decimal = Decimal(0)) -> Decimal:
    """Dollars for ``minutes`` more usage in a month where ``already_used`` minutes were billed.

    The month's cumulative usage walks the tiers (first 100 minutes $0.10, up to 500 $0.08,
    beyond $0.06), so the cost of a job depends on where in the month's usage it falls.
    """
    def total(m: Decimal) -> Decimal:
        cost, floor = Decimal(0), Decimal(0)
        for ceiling, rate in RATE_TIERS:
            top = m if ceiling is None else min(m, ceiling)
            if top > floor:
                cost += (top - floor) * rate
            if ceiling is None or m <= ceiling:
                break
            floor = ceiling
        return cost

    cost = total(already_used + minutes) - total(already_used)
    return cost.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def month_start(now: dt.datetime | None = None) -> dt.datetime:
    """The first instant of the current calendar month, in UTC (monthly figures start here)."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
