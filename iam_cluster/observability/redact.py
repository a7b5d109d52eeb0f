"""Secrets out of logs and error reports: sensitive keys are masked, tokens inside text are cut out."""

from __future__ import annotations

import functools
import re
from typing import Any

MASK = "[REDACTED]"

#: Keys whose values are never written anywhere (matched anywhere in the key, case-insensitive).
SENSITIVE_KEY = re.compile(
    r"passw|passphrase|secret|token|authori[sz]ation|api[_-]?key|cookie|credential|"
    r"private[_-]?key|signature|^dsn$|_dsn$|^body$|^audio$",
    re.IGNORECASE,
)

#: Secrets that show up inside free text: one pass, one alternative per kind.
_IN_TEXT = re.compile(
    r"(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?P<scheme>\b(?:[Bb]earer|[Bb]asic|[Tt]oken)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?P<userinfo>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)"
    r"|(?P<stripe>\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{6,}|\bwhsec_[A-Za-z0-9]{6,})"
    r"|(?P<assign>\b[\w-]*(?:password|passwd|secret|token|api[_-]?key)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
    r"[^\"'\s,&;}]+",
    re.IGNORECASE,
)


#: Lower-case fragments at least one of which any maskable text contains: a cheap test first.
_HINTS = re.compile("|".join(re.escape(hint) for hint in (
    "eyj", "bearer", "basic", "token", "://", "_live_", "_test_", "whsec_", "passw", "secret",
    "api_key", "apikey", "api-key")))
#: Keys whose values are ids, names and numbers made by this code, never secrets: not scanned.
SAFE_KEYS = frozenset({"timestamp", "level", "logger", "service", "event_id", "request_id", "user_id", "job_id",
                       "meeting_id", "route", "method", "status", "duration_ms", "duration_s", "attempt"})


def _replace(match: re.Match) -> str:
    for group in ("scheme", "userinfo", "assign"):
        prefix = match.group(group)
        if prefix is not None:
            return prefix + MASK
    return MASK


def redact_text(text: str) -> str:
    """``text`` with bearer/JWT tokens, URL passwords, Stripe keys and ``password=...`` values masked."""
    if len(text) < 8 or not _HINTS.search(text.lower()):
        return text
    return _IN_TEXT.sub(_replace, text)


@functools.lru_cache(maxsize=4096)
def sensitive_key(key: str) -> bool:
    """Whether values under ``key`` are secrets (keys repeat, so the answer is cached)."""
    return SENSITIVE_KEY.search(key) is not None


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` (dicts, lists, strings) with sensitive keys and tokens in text masked."""
    if isinstance(value, str):
        return redact_text(value)
    if depth > 12:
        return value
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and sensitive_key(k) and v not in (None, "")
                else redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, depth + 1) for v in value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"  # request bodies and audio never leave the process
    return value


def redact_event_dict(logger: Any, method: str, event_dict: dict) -> dict:
    """structlog processor: ``redact`` over one log event (in place at the top level)."""
    for key, value in event_dict.items():
        if key in SAFE_KEYS:
            continue
        if sensitive_key(key) and value not in (None, ""):
            event_dict[key] = MASK
        elif isinstance(value, str):
            if len(value) >= 8:
                event_dict[key] = redact_text(value)
        elif isinstance(value, (dict, list, tuple, bytes, bytearray, memoryview)):
            event_dict[key] = redact(value, 1)
    return event_dict
