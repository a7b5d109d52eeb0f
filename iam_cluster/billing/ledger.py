"""The usage ledger: one row per completed job, written in the job-ending transaction (worker side)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg

from iam_cluster.billing.plans import billable_minutes, month_start, tiered_cost
from iam_cluster.db.errors import translate_errors
from iam_cluster.db.queries import QUERIES


def record_completion(conn: psycopg.Connection, *, user_id: uuid.UUID, job_id: uuid.UUID,
                      meeting_id: uuid.UUID | None, audio_seconds: float, model: str | None) -> uuid.UUID | None:
    """Writes the job's usage row and settles its reservation.

    Call it inside the transaction that completes the job. The user row is locked first so the
    month's running total (which decides the tier of the rate) is read consistently.

    Returns:
        The new row's id, or None when the job already has one (nothing is written twice).
    """
    minutes = billable_minutes(audio_seconds)
    with translate_errors():
        conn.execute(QUERIES["billing_lock_user"], {"user_id": user_id})
        summary = conn.execute(QUERIES["billing_usage_summary"],
                               {"user_id": user_id, "month_start": month_start()}).fetchone()
        used = Decimal(summary[0])
        row = conn.execute(QUERIES["billing_insert_usage"], {
            "user_id": user_id, "job_id": job_id, "meeting_id": meeting_id, "audio_seconds": audio_seconds,
            "billable_minutes": minutes, "model": model, "cost": tiered_cost(minutes, used)}).fetchone()
        conn.execute(QUERIES["billing_settle"], {"job_id": job_id})
    return row[0] if row else None


def release(conn: psycopg.Connection, job_id: uuid.UUID) -> None:
    """Frees a failed job's reserved minutes; it bills nothing."""
    with translate_errors():
        conn.execute(QUERIES["billing_release"], {"job_id": job_id})
