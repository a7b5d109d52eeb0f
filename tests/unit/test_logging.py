"""Structured logs: one JSON object per line with the bound ids, every library's records included, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from iam_cluster.observability import context
from iam_cluster.observability.logging import configure_logging, get_logger, reset_logging
from iam_cluster.observability.redact import MASK, redact, redact_text
from iam_cluster.settings import ObservabilitySettings

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize("text, secret", [
    (f"Authorization: Bearer {JWT}", JWT),
    ("GET /api/v2/messages/ws?token=abcdef123456&user_id=7", "abcdef123456"),
    ("connect postgresql://iam:pg-pass-123@db:5432/iam failed", "pg-pass-123"),
    ("stripe key sk_live_abcdef1234567890 rejected", "sk_live_abcdef1234567890"),
    ('body was {"email": "a@b.c", "password": "hunter2hunter2"}', "hunter2hunter2"),
    ("whsec_0123456789abcdef is the webhook secret", "whsec_0123456789abcdef"),
])
def test_secrets_in_text_are_masked(text, secret):
    masked = redact_text(text)
    assert secret not in masked and MASK in masked


def test_sensitive_keys_are_masked_at_any_depth_and_the_rest_kept():
    event = {"user": "ada", "password": "x" * 12, "headers": {"Authorization": "Basic abc", "Accept": "*/*"},
             "items": [{"api_key": "k" * 10, "n": 3}], "body": b"\x00" * 100, "audio": "RIFF...."}
    out = redact(event)
    assert out["user"] == "ada" and out["headers"]["Accept"] == "*/*" and out["items"][0]["n"] == 3
    assert out["password"] == out["headers"]["Authorization"] == out["items"][0]["api_key"] == MASK
    assert out["body"] == out["audio"] == MASK
    assert redact({"chunk": b"\x00" * 10}) == {"chunk": "<10 bytes>"}


def test_context_bound_in_a_child_task_is_seen_by_the_whole_request():
    async def request() -> dict:
        with context.scope(request_id="r1"):
            async def dependency() -> None:  # Litestar resolves dependencies in task groups
                context.update(user_id="u1")

            await asyncio.gather(dependency(), asyncio.sleep(0))
            return context.current()

    assert asyncio.run(request()) == {"request_id": "r1", "user_id": "u1"}
    assert context.current() == {}


def test_ids_travel_as_headers_and_forged_ones_are_refused():
    with context.scope(request_id="req-1", job_id="0f8e", user_id="42", meeting_id="m"):
        headers = context.headers()
    assert headers == {"X-Request-ID": "req-1", "X-Job-ID": "0f8e", "X-User-ID": "42"}
    assert context.from_headers({k.lower(): v for k, v in headers.items()}) == {
        "request_id": "req-1", "job_id": "0f8e", "user_id": "42"}
    assert context.from_headers({"X-Request-ID": "bad id\n{\"level\":\"error\"}", "X-Job-ID": "x" * 500}) == {}


@pytest.fixture
def json_stream():
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="json", log_level="INFO"), "worker", stream=stream)
    yield stream
    reset_logging()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_from_structlog_stdlib_and_uvicorn_carry_the_context(json_stream):
    with context.scope(request_id="req-9", job_id="job-9"):
        get_logger("iam_cluster.test").info("job claimed", attempt=2)
        logging.getLogger("iam_cluster.legacy").warning("lease of %s lost", "job-9")
        logging.getLogger("uvicorn.error").info("Started server process")
        get_logger("iam_cluster.test").debug("below the level")
        get_logger("iam_cluster.test").warning("job failed", code="too_long")  # via stdlib (Sentry sees it)
    out = lines(json_stream)
    assert [line["event"] for line in out] == ["job claimed", "lease of job-9 lost", "Started server process",
                                              "job failed"]
    assert out[3]["level"] == "warning" and out[3]["code"] == "too_long" and out[3]["logger"] == "iam_cluster.test"
    assert all(line["request_id"] == "req-9" and line["job_id"] == "job-9" and line["service"] == "worker"
               for line in out)
    assert out[0]["attempt"] == 2 and out[0]["level"] == "info" and out[1]["level"] == "warning"
    assert out[0]["logger"] == "iam_cluster.test" and out[2]["logger"] == "uvicorn.error"
    assert all(line["timestamp"].endswith("Z") for line in out)


def test_json_lines_mask_secrets_and_keep_tracebacks(json_stream):
    log = get_logger("iam_cluster.test")
    log.info("login", password="hunter2hunter2", authorization=f"Bearer {JWT}")
    for logger in (logging.getLogger("iam_cluster.legacy"), log):
        try:
            raise ValueError(f"could not connect to postgresql://u:db-pass-77@db/x with {JWT}")
        except ValueError:
            logger.exception("connect failed")
    text = json_stream.getvalue()
    assert "hunter2hunter2" not in text and JWT not in text and "db-pass-77" not in text
    for failed in lines(json_stream)[-2:]:
        assert failed["event"] == "connect failed" and failed["level"] == "error"
        assert "Traceback" in failed["exception"] and "ValueError" in failed["exception"]


def test_console_format_is_readable_text():
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="console"), "api", stream=stream)
    try:
        with context.scope(job_id="job-1"):
            get_logger("iam_cluster.test").info("job completed", audio_s=3.5)
    finally:
        reset_logging()
    text = stream.getvalue()
    assert "job completed" in text and "audio_s=3.5" in text and "job_id=job-1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
