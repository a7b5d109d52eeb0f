"""Report the usage ledger to Stripe as billing meter events, each row exactly once.

``sync_usage`` claims a batch of unreported rows (``FOR UPDATE SKIP LOCKED``, so concurrent syncs
never share a row) and sends each as a meter event whose ``identifier`` and idempotency key are the
row id. A success stamps ``stripe_reported_at``; a failure counts an attempt and keeps the error,
and the row is sent again on the next run. If the process dies after Stripe accepted an event but
before the transaction commits, the next run resends the same key and identifier, which Stripe
answers from its idempotency cache and deduplicates: the row is still billed once.
"""

from __future__ import annotations

import decimal
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import stripe
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from iam_cluster.db.queries import QUERIES

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    reported: list[Any] = field(default_factory=list)
    failed: list[Any] = field(default_factory=list)


def _value(minutes: Any) -> str:
    """The meter value as Stripe wants it: a decimal string, without a trailing ``.0``."""
    d = decimal.Decimal(str(minutes))
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")


async def sync_usage(conn: AsyncConnection, client: stripe.StripeClient, batch: int = 100, *,
                     event_name: str = "transcription_minutes") -> SyncResult:
    """Send up to ``batch`` unreported ledger rows to Stripe; returns which were reported or failed.

    Runs in its own transaction (a savepoint if ``conn`` is already inside one); row locks are held
    until it ends, so a concurrent sync skips these rows.
    """
    result = SyncResult()
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(QUERIES["stripe_claim_unreported_usage"], {"batch": batch})
            rows = await cur.fetchall()
        for row in rows:
            key = str(row["id"])
            params = {
                "event_name": event_name,
                "identifier": key,
                "payload": {"stripe_customer_id": row["stripe_customer_id"],
                            "value": _value(row["billable_minutes"])},
            }
            try:
                await anyio.to_thread.run_sync(lambda p=params, k=key: client.v1.billing.meter_events.create(
                    params=p, options={"idempotency_key": f"usage-{k}"}))
            except stripe.StripeError as exc:
                log.warning("usage row %s not reported to Stripe: %s", key, exc)
                await conn.execute(QUERIES["stripe_usage_failed"], {"id": row["id"], "error": str(exc)[:1000]})
                result.failed.append(row["id"])
            else:
                await conn.execute(QUERIES["stripe_usage_reported"], {"id": row["id"]})
                result.reported.append(row["id"])
    return result


async def run_sync(settings, once: bool = False, interval: float = 60.0, batch: int = 100) -> int:
    """Report unreported usage to Stripe every ``interval`` seconds (``iam-cluster billing-sync``).

    Returns the process exit status: 2 when no Stripe key is configured.
    """
    import asyncio
    import logging

    from psycopg import AsyncConnection

    from iam_cluster.billing.stripe_client import make_client

    log = logging.getLogger("iam_cluster.billing")
    if not settings.billing.secret_key:
        log.error("STRIPE_SECRET_KEY is not set: nothing to report usage to")
        return 2
    client = make_client(settings.billing)
    while True:
        async with await AsyncConnection.connect(settings.database.url) as conn:
            while True:  # drain what is there, one batch (one transaction) at a time
                result = await sync_usage(conn, client, batch, event_name=settings.billing.meter_event_name)
                log.info("usage sync: %s", result)
                if not result.reported or result.failed:
                    break
        if once:
            return 0
        await asyncio.sleep(interval)
