"""Row types: msgspec structs that query results convert into (see ``pool.struct_row``)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import msgspec


class User(msgspec.Struct, kw_only=True):
    """A row of ``users``."""

    id: uuid.UUID
    email: str
    password_hash: str
    full_name: str | None = None
    is_active: bool = True
    is_admin: bool = False
    tier: str = "free"
    stripe_customer_id: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class Meeting(msgspec.Struct, kw_only=True):
    """A row of ``meetings`` (the generated ``search`` column is left out)."""

    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None = None
    meeting_date: dt.datetime | None = None
    duration_seconds: float | None = None
    audio_file_url: str | None = None
    audio_file_size: int | None = None
    audio_format: str | None = None
    original_filename: str | None = None
    transcription_text: str | None = None
    #: The whole transcript as the engine made it (JSON of ``pipeline.types.Transcript``).
    transcript: Any = None
    processing_status: str = "none"
    processing_started_at: dt.datetime | None = None
    processing_completed_at: dt.datetime | None = None
    processing_error: str | None = None
    model_used: str | None = None
    provider_used: str | None = None
    language_detected: str | None = None
    transcription_confidence: float | None = None
    transcription_cost: decimal.Decimal | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
