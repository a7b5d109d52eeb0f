"""Ingress: the HTTP and handle entry point. Preprocess replicas ``prepare`` a recording, then the
shared ``finish`` runs here with remote ASR and diarization (the same code as in process)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from iam_cluster.errors import IAMError, MediaError
from iam_cluster.observability import context, setup_from_env
from iam_cluster.observability.logging import get_logger
from iam_cluster.observability.serve_metrics import IngressMetrics
from iam_cluster.pipeline.run import Pipeline
from iam_cluster.pipeline.runner import Limits, finish
from iam_cluster.pipeline.types import ProgressHook, no_progress, parse_options
from iam_cluster.serve.asr import RemoteASR
from iam_cluster.serve.diarize import diarize_remotely
from iam_cluster.serve.packing import RequestPacker

log = get_logger("iam_cluster.serve")
#: HTTP status of each error code the cluster answers with.
STATUS = {"invalid_options": 422, "bad_request": 400, "too_large": 413, "not_found": 404,
          **{code: 422 for code in MediaError.CODES}}


class RequestCancelled(IAMError):
    """The caller went away; the work stops at the next window."""

    code = "cancelled"


@serve.deployment(max_ongoing_requests=64)
class Ingress:
    """``POST /transcribe`` (audio bytes in the body; ``options`` JSON, ``filename``, ``max_duration``,
    ``min_duration`` and ``stream`` in the query) or the ``transcribe`` handle method.

    With ``stream=1`` the answer is NDJSON: ``{"progress": {step, completed, total}}`` lines, then
    ``{"transcript": ...}`` or ``{"error": {code, message}}``; a closed connection cancels the work.
    """

    def __init__(self, preprocess, asr, diarize, limits: Limits, max_upload_bytes: int,
                 media_root: str | None, batch_windows: int, pack_requests: bool = True) -> None:
        self.preprocess, self.diarize = preprocess, diarize
        self.pipeline = Pipeline(RemoteASR(asr), batch_windows, vad=_NoVad())
        # Short recordings of concurrent requests share windows (see ``packing``).
        self.packer = RequestPacker(self._finish) if pack_requests else None
        self.limits = limits
        self.max_upload_bytes = max_upload_bytes
        self.media_root = Path(media_root).resolve() if media_root else None
        setup_from_env("serve")
        self.metrics = IngressMetrics()

    async def transcribe(self, audio: bytes | str, options: dict | None = None, name: str = "<upload>",
                         limits: Limits | None = None, hook: ProgressHook = no_progress) -> dict:
        """Transcribe one recording; returns the Transcript as JSON-ready builtins.

        Raises:
            MediaError / OptionsError: this request fails, others do not.
        """
        opts = parse_options(options)
        if isinstance(audio, str):
            audio = self._local_path(audio)
        started = time.perf_counter()
        prepared = await self.preprocess.remote(audio, name, opts, self._limits(limits))
        self.metrics.shards.observe(len(prepared.shards))
        if self.packer is not None and self.packer.packable(prepared):
            transcript = await self.packer.transcribe(prepared, opts, hook)
        else:
            [transcript] = await asyncio.to_thread(self._finish, [prepared], opts, hook)
        wall = time.perf_counter() - started
        log.info("transcribed", shards=len(prepared.shards), audio_s=round(prepared.duration, 3),
                 wall_s=round(wall, 3), x_real_time=round(prepared.duration / wall, 2) if wall > 0 else None)
        return msgspec.to_builtins(transcript)

    def _finish(self, prepared: list, options, hook: ProgressHook) -> list:
        return finish(self.pipeline, prepared, options, hook, diarize_remotely(self.diarize))

    async def __call__(self, request: Request) -> Response:
        # The caller's ids (the worker sends its job's) go on every line about this request.
        with context.scope(**context.from_headers(request.headers)):
            response = await self._handle(request)
        status = response.status_code
        outcome = "ok" if status < 400 else "client_error" if status < 500 else "error"
        self.metrics.requests.inc(tags={"outcome": outcome})
        return response

    async def _handle(self, request: Request) -> Response:
        if request.method != "POST" or request.url.path.rstrip("/").split("/")[-1] != "transcribe":
            return _error(404, "not_found", "POST audio to /transcribe")
        try:
            query = request.query_params
            options = json.loads(query.get("options") or "{}")
            name = query.get("filename") or "<upload>"
            limits = Limits(float(query["max_duration"]) if query.get("max_duration") else None,
                            float(query.get("min_duration") or 0.0))
            body = await self._body(request)
            source = query.get("uri") or body
            if query.get("stream") in ("1", "true"):
                return StreamingResponse(self._stream(source, options, name, limits, context.current()),
                                         media_type="application/x-ndjson")
            return JSONResponse(await self.transcribe(source, options, name, limits))
        except (IAMError, json.JSONDecodeError, ValueError) as exc:
            return _error(*_describe(exc))
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a code
            log.exception("transcription failed")
            return _error(500, "internal", "internal error")

    async def _stream(self, source, options, name, limits, ids: dict) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def hook(step: str, completed: int, total: int) -> None:  # called from the ASR thread
            if cancelled.is_set():
                raise RequestCancelled()
            progress = {"progress": {"step": step, "completed": completed, "total": total}}
            loop.call_soon_threadsafe(events.put_nowait, progress)

        with context.scope(**ids):  # the work's task keeps the caller's ids after this returns
            work = asyncio.ensure_future(self.transcribe(source, options, name, limits, hook))
        try:
            while True:
                waiting = asyncio.ensure_future(events.get())
                await asyncio.wait({waiting, work}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    yield _line(waiting.result())
                    continue
                waiting.cancel()
                while not events.empty():
                    yield _line(events.get_nowait())
                try:
                    yield _line({"transcript": work.result()})
                except Exception as exc:  # noqa: BLE001 - every failure becomes an error line
                    status, code, message = _describe(exc)
                    if status >= 500:
                        log.error("transcription failed", exc_info=exc)
                    yield _line({"error": {"code": code, "message": message}})
                return
        finally:
            cancelled.set()
            if not work.done():
                work.cancel()

    async def _body(self, request: Request) -> bytes:
        length = int(request.headers.get("content-length") or 0)
        if length > self.max_upload_bytes:
            raise _TooLarge(f"upload exceeds {self.max_upload_bytes} bytes")
        body = await request.body()
        if len(body) > self.max_upload_bytes:
            raise _TooLarge(f"upload exceeds {self.max_upload_bytes} bytes")
        return body

    def _limits(self, asked: Limits | None) -> Limits:
        """The cluster's limits, narrowed to the caller's."""
        if asked is None:
            return self.limits
        ceilings = [x for x in (self.limits.max_duration, asked.max_duration) if x is not None]
        return Limits(min(ceilings) if ceilings else None, max(self.limits.min_duration, asked.min_duration))

    def _local_path(self, uri: str) -> str:
        """``file://`` URIs under the configured media root only (never arbitrary paths)."""
        path = Path(uri.removeprefix("file://")).resolve()
        if self.media_root is None or not path.is_relative_to(self.media_root):
            raise MediaError(uri, "only file:// URIs under IAM_SERVE_MEDIA_ROOT are accepted")
        return os.fspath(path)


class _TooLarge(IAMError):
    code = "too_large"


class _NoVad:
    """The ingress never runs the VAD itself: preprocess replicas did."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("speech regions come from the Preprocess deployment")


def _describe(exc: Exception) -> tuple[int, str, str]:
    """``(HTTP status, code, message)`` of a failure."""
    if isinstance(exc, IAMError):
        status = STATUS.get(exc.code, 500)
        return status, exc.code, exc.message if status < 500 else "internal error"
    if isinstance(exc, json.JSONDecodeError | ValueError):
        return 400, "bad_request", str(exc)
    return 500, "internal", "internal error"


def _line(event: dict) -> bytes:
    return msgspec.json.encode(event) + b"\n"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

