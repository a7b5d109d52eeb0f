"""The OpenAI-compatible audio API: ``POST /v1/audio/transcriptions``, ``/v1/audio/translations``,
``GET /v1/models`` — so code written for OpenAI's client talks to this service unchanged.

Form fields as OpenAI's: ``file``, ``model``, ``language``, ``prompt``, ``response_format`` (json,
text, srt, verbose_json, vtt), ``temperature``, ``timestamp_granularities[]`` (word, segment),
``stream``; extensions: ``diarize``, ``num_speakers``, ``min_speakers``, ``max_speakers``,
``hotwords``, ``beam_size``. Authenticated with an API key (scope ``transcribe``) or an access token.
Errors come in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.response import ServerSentEvent

from iam_cluster.api.errors import STATUS, APIError, log
from iam_cluster.api.input_guard import FREE_TEXT, free_text_fields
from iam_cluster.api.openapi import OBJECT, TEXT, errors
from iam_cluster.api.jobs import OPENAI_MODEL_ALIAS
from iam_cluster.api.limits import upload_slot
from iam_cluster.api.sync import transcribe_now, upload_key
from iam_cluster.api.uploads import probe_stored, receive_upload, upload_operation
from iam_cluster.db.rows import User
from iam_cluster.errors import IAMError, OptionsError
from iam_cluster.pipeline.export import render
from iam_cluster.pipeline.models import is_multilingual
from iam_cluster.pipeline.types import Transcript, TranscribeOptions, parse_options
from iam_cluster.settings import Settings
from iam_cluster.storage import Storage

FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
#: ``temperature=0``: Whisper's own fallback ladder, as OpenAI's endpoint documents.
FALLBACK_LADDER = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_text = Schema(type=OpenAPIType.STRING)
FORM_FIELDS = {name: _text for name in (
    "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]", "stream",
    "diarize", "num_speakers", "min_speakers", "max_speakers", "hotwords", "beam_size")}


class Form(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The form's text fields, as OpenAI defines them, plus this service's extensions."""

    model: str = OPENAI_MODEL_ALIAS
    language: str | None = None
    prompt: Annotated[str, msgspec.Meta(extra=FREE_TEXT)] | None = None
    response_format: str = "json"
    temperature: float = 0.0
    timestamp_granularities: list[str] = []
    stream: bool = False
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    hotwords: str | None = None
    beam_size: int | None = None


def parse_form(fields: dict[str, list[str]], task: str, settings: Settings) -> tuple[Form, TranscribeOptions]:
    """The request's form and the engine options it asks for (every failure names its field)."""
    raw = {k.removesuffix("[]"): (v if k.endswith("[]") else v[-1]) for k, v in fields.items() if k != "file"}
    try:
        form = msgspec.convert(raw, Form, strict=False)
    except msgspec.ValidationError as exc:
        raise OptionsError.from_validation(exc) from None
    if form.response_format not in FORMATS:
        raise OptionsError("response_format", f"choose from {', '.join(FORMATS)}")
    if set(form.timestamp_granularities) - {"word", "segment"}:
        raise OptionsError("timestamp_granularities", "choose from word, segment")
    if form.model not in (OPENAI_MODEL_ALIAS, settings.models.name):
        raise OptionsError("model", f"model {form.model!r} is not served here; see GET /v1/models")
    wanted = {"language": form.language, "task": task, "initial_prompt": form.prompt, "hotwords": form.hotwords,
              "beam_size": form.beam_size, "diarize": form.diarize or None, "num_speakers": form.num_speakers,
              "min_speakers": form.min_speakers, "max_speakers": form.max_speakers,
              # 0 means: start greedy and raise the temperature while the output looks failed
              # (OpenAI's rule; our fallbacks are seeded, so the answer is still repeatable)
              "temperatures": [form.temperature] if form.temperature > 0 else list(FALLBACK_LADDER),
              "word_timestamps": "word" in form.timestamp_granularities or form.diarize}
    options = parse_options({k: v for k, v in wanted.items() if v is not None})
    options.check_model(settings.models.name, is_multilingual(settings.models.name))
    return form, options


def verbose(transcript: Transcript, task: str, words: bool) -> dict:
    """OpenAI's ``verbose_json``: language, duration, text, segments (and words when asked)."""
    body = {"task": task, "language": language_name(transcript.language), "duration": transcript.duration,
            "text": transcript.text, "segments": [
                {"id": s.id, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                 "temperature": 0.0, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                 "no_speech_prob": s.no_speech_prob, **({"speaker": s.speaker} if s.speaker else {})}
                for s in transcript.segments]}
    if words:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end,
                          **({"speaker": w.speaker} if w.speaker else {})}
                         for s in transcript.segments for w in s.words]
    if transcript.speakers:
        body["speakers"] = transcript.speakers
    return {**body, "usage": usage(transcript)}


def language_name(code: str) -> str:
    """``english`` for ``en``, as OpenAI answers (the code itself when no name is known)."""
    import pycountry

    found = pycountry.languages.get(alpha_2=code) if len(code) == 2 else None
    return found.name.lower() if found is not None else code


def usage(transcript: Transcript) -> dict:
    return {"type": "duration", "seconds": math.ceil(transcript.duration)}


def answer(transcript: Transcript, form: Form, task: str) -> Response:
    if form.response_format == "json":
        return Response({"text": transcript.text, "usage": usage(transcript)})
    if form.response_format == "verbose_json":
        return Response(verbose(transcript, task, "word" in form.timestamp_granularities))
    fmt = "txt" if form.response_format == "text" else form.response_format
    return Response(render(transcript, fmt), media_type="text/plain; charset=utf-8")


def events(transcript: Transcript) -> AsyncIterator[str]:
    """``transcript.text.delta`` per segment, then ``transcript.text.done`` (OpenAI's stream events)."""

    async def gen():
        for s in transcript.segments:
            yield msgspec.json.encode({"type": "transcript.text.delta", "delta": s.text}).decode()
        yield msgspec.json.encode({"type": "transcript.text.done", "text": transcript.text,
                                   "usage": usage(transcript)}).decode()

    return gen()


async def _audio(request: Request, settings: Settings, storage: Storage, user: User, task: str) -> Response:
    state = request.app.state
    async with upload_slot(state.redis_gate, state.redis, settings.redis.key_prefix, user.id,
                           settings.api.max_concurrent_uploads):
        received = await receive_upload(request, storage, lambda name: upload_key(user.id, name),
                                        settings.storage.max_upload_bytes, settings.api.upload_read_timeout_s,
                                        free_text=free_text_fields(Form))
    try:
        form, options = parse_form(received.fields, task, settings)
        name = received.filename or "upload"
        info = await anyio.to_thread.run_sync(probe_stored, storage, received.key, name, received.size,
                                              settings.audio)
        limit = settings.api.sync_max_audio_seconds
        if info.duration is not None and info.duration > limit:
            raise APIError("too_large", f"audio of {info.duration:.0f} s is longer than this endpoint takes "
                                        f"({limit:.0f} s): upload it to a meeting and use POST "
                                        "/api/v1/meetings/{id}/transcribe (the job API) instead")
        transcript = await transcribe_now(request.app.state, settings, storage, user, received.key, name,
                                          info.duration, options)
    finally:
        await anyio.to_thread.run_sync(storage.delete, received.key)
    if form.stream:
        return ServerSentEvent(events(transcript))
    return answer(transcript, form, task)


_upload = upload_operation(FORM_FIELDS, raw=False)
_AUDIO_RESPONSES = errors(402, 408, 415, 422)
_AUDIO_OPT = {"upload": True, "free_text": tuple(free_text_fields(Form)), "content": {200: {"application/json": OBJECT, "text/plain": TEXT,
                                                "text/event-stream": TEXT}}}


@post("/audio/transcriptions", status_code=200, operation_class=_upload, opt=_AUDIO_OPT, responses=_AUDIO_RESPONSES)
async def transcriptions(request: Request, current_user: NamedDependency[User], settings: NamedDependency[Settings],
                         storage: NamedDependency[Storage]) -> Response:
    """Transcribe an uploaded file (OpenAI's ``audio.transcriptions.create``)."""
    return await _audio(request, settings, storage, current_user, "transcribe")


@post("/audio/translations", status_code=200, operation_class=_upload, opt=_AUDIO_OPT, responses=_AUDIO_RESPONSES)
async def translations(request: Request, current_user: NamedDependency[User], settings: NamedDependency[Settings],
                       storage: NamedDependency[Storage]) -> Response:
    """Translate an uploaded file's speech into English text (multilingual models only)."""
    return await _audio(request, settings, storage, current_user, "translate")


@get("/models", opt={"scope": "read"})
async def models(current_user: NamedDependency[User], settings: NamedDependency[Settings]) -> dict:
    """What this deployment serves: its model, and ``whisper-1`` as another name for it."""
    ids = dict.fromkeys([OPENAI_MODEL_ALIAS, settings.models.name])
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "iam-cluster"}
                                       for i in ids]}


def openai_error(request: Request, exc: Exception) -> Response:
    """Errors in OpenAI's shape, so OpenAI clients raise their typed exceptions."""
    if isinstance(exc, IAMError):
        status, code, message = STATUS.get(exc.code, 500), exc.code, exc.message
    else:
        status, code, message = getattr(exc, "status_code", 500), "error", str(getattr(exc, "detail", exc))
    if status >= 500:
        log.error("request failed: %s %s", request.method, request.url.path, exc_info=exc)
        message = "internal error"
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "invalid_request_error" if status < 500 else "server_error")
    body = {"message": message, "type": kind, "param": getattr(exc, "field", None), "code": code}
    return Response({"error": body}, status_code=status, headers=getattr(exc, "headers", None))


router = Router(path="/v1", route_handlers=[transcriptions, translations, models], tags=["openai"],
                opt={"scope": "transcribe"},
                exception_handlers={IAMError: openai_error, HTTPException: openai_error, Exception: openai_error})
