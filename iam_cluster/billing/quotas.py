"""Quotas at submission: reserve a job's minutes against the plan, race-free, and the month's usage figures."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from iam_cluster.billing.plans import Plan, billable_minutes, month_start, plan_for
from iam_cluster.db.errors import translate_errors
from iam_cluster.db.queries import QUERIES


class Usage(msgspec.Struct, kw_only=True):
    """A user's figures for the current month (UTC), derived from the ledger and open reservations."""

    plan: str
    period_start: dt.datetime
    #: Minutes billed this month (completed jobs).
    minutes_this_month: Decimal
    #: Minutes held by queued or running jobs; they count against ``remaining_minutes``.
    reserved_minutes: Decimal
    #: The plan's monthly minutes; None is unlimited.
    included_minutes: int | None
    #: What may still be submitted this month; None is unlimited.
    remaining_minutes: Decimal | None
    total_minutes: Decimal
    cost_this_month: Decimal
    jobs_this_month: int


class QuotaExceeded(Exception):
    """The job's minutes exceed what the plan has left this month."""

    def __init__(self, needed: Decimal, usage: Usage) -> None:
        super().__init__(f"this job needs {needed} minutes but only {usage.remaining_minutes} of the "
                         f"{usage.plan} plan's {usage.included_minutes} monthly minutes remain")
        self.needed = needed
        self.usage = usage


def usage_of(plan: Plan, row: dict, start: dt.datetime) -> Usage:
    """``Usage`` from a ``billing_usage_summary`` row."""
    used, reserved = Decimal(row["month_minutes"]), Decimal(row["reserved_minutes"])
    remaining = None
    if plan.monthly_minutes is not None:
        remaining = max(Decimal(0), Decimal(plan.monthly_minutes) - used - reserved)
    return Usage(plan=plan.id, period_start=start, minutes_this_month=used, reserved_minutes=reserved,
                 included_minutes=plan.monthly_minutes, remaining_minutes=remaining,
                 total_minutes=Decimal(row["total_minutes"]), cost_this_month=Decimal(row["month_cost"]),
                 jobs_this_month=row["month_jobs"])


async def _summary(conn: AsyncConnection, user_id: uuid.UUID, tier: str) -> Usage:
    start = month_start()
    with translate_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(QUERIES["billing_usage_summary"], {"user_id": user_id, "month_start": start})
            row = await cur.fetchone()
    return usage_of(plan_for(tier), row, start)


async def current_usage(conn: AsyncConnection, user_id: uuid.UUID, tier: str) -> Usage:
    """The month's figures for one user (no lock: a snapshot)."""
    return await _summary(conn, user_id, tier)


async def check_quota(conn: AsyncConnection, user_id: uuid.UUID, audio_seconds: float | None) -> Decimal:
    """Locks the user row, then checks that ``audio_seconds`` fit the plan's remaining minutes.

    Must run inside the transaction that then inserts the job and calls ``reserve``: the user
    row stays locked until it commits, so concurrent submissions are checked one after another
    and each sees the others' reservations.

    Returns:
        The billable minutes to reserve.

    Raises:
        QuotaExceeded: they do not fit.
    """
    needed = billable_minutes(audio_seconds)
    await check_minutes(conn, user_id, needed)
    return needed


async def check_minutes(conn: AsyncConnection, user_id: uuid.UUID, needed: Decimal) -> Usage:
    """``check_quota`` for minutes already counted (a batch: the sum of its files' billable minutes).

    Raises:
        QuotaExceeded: they do not fit.
    """
    with translate_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(QUERIES["billing_lock_user"], {"user_id": user_id})
            user = await cur.fetchone()
    usage = await _summary(conn, user_id, user["tier"])
    if usage.remaining_minutes is not None and needed > usage.remaining_minutes:
        raise QuotaExceeded(needed, usage)
    return usage


async def reserve(conn: AsyncConnection, user_id: uuid.UUID, job_id: uuid.UUID, minutes: Decimal) -> None:
    """Holds ``minutes`` for the job until it completes (settle) or fails (release)."""
    with translate_errors():
        await conn.execute(QUERIES["billing_reserve"], {"job_id": job_id, "user_id": user_id, "minutes": minutes})


async def release(conn: AsyncConnection, job_id: uuid.UUID) -> None:
    """Free a job's reserved minutes (a job cancelled before it ran); it bills nothing."""
    with translate_errors():
        await conn.execute(QUERIES["billing_release"], {"job_id": job_id})
