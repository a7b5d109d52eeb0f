"""Ingress: HTTP and handle entry point; fans a recording's shards out and merges them back."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import msgspec
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from iam_cluster.errors import IAMError, MediaError
from iam_cluster.observability import context
from iam_cluster.observability.logging import get_logger
from iam_cluster.pipeline.merge import join_shards, merge
from iam_cluster.pipeline.run import Pipeline
from iam_cluster.pipeline.shard import Shard, join_transcripts
from iam_cluster.pipeline.types import TranscribeOptions, Transcript
from iam_cluster.serve.asr import RemoteASR

log = get_logger("iam_cluster.serve")


class JobError(msgspec.Struct):
    code: str
    message: str


@serve.deployment(max_ongoing_requests=64)
class Ingress:
    """``POST /transcribe`` (audio bytes in the body, ``options`` JSON in the query) or the
    ``transcribe`` handle method; answers a Transcript, or a JSON error with a code."""

    def __init__(self, preprocess, asr, diarize, shard_seconds: float, max_upload_bytes: int,
                 media_root: str | None) -> None:
        from iam_cluster.observability import setup_from_env
        from iam_cluster.observability.serve_metrics import IngressMetrics

        setup_from_env("serve")
        self.metrics = IngressMetrics()
        self.preprocess, self.diarize_handle = preprocess, diarize
        self.pipeline = Pipeline(RemoteASR(asr), vad=_NoVad())
        self.shard_seconds = shard_seconds
        self.max_upload_bytes = max_upload_bytes
        self.media_root = Path(media_root).resolve() if media_root else None

    async def transcribe(self, audio: bytes | str, options: dict | None = None, name: str = "<upload>") -> dict:
        """Transcribe one recording; returns the Transcript as JSON-ready builtins.

        Raises:
            MediaError: the media cannot be used (this request fails, others do not).
        """
        opts = msgspec.convert(options or {}, TranscribeOptions)
        if isinstance(audio, str):
            audio = self._local_path(audio)
        started = time.perf_counter()
        shards: list[Shard] = await self.preprocess.remote(audio, name, opts, self.shard_seconds)
        self.metrics.shards.observe(len(shards))
        plain = msgspec.structs.replace(opts, diarize=False)
        asr_parts = [asyncio.to_thread(self.pipeline.transcribe_regions, [s.audio], [s.regions], plain) for s in shards]
        diar_parts = [
            self.diarize_handle.remote(s, opts.num_speakers, opts.min_speakers, opts.max_speakers)
            for s in shards
        ] if opts.diarize else []
        transcripts = await asyncio.gather(*asr_parts)
        duration = sum(s.audio.duration for s in shards)
        transcript = join_transcripts([(s.offset, t[0]) for s, t in zip(shards, transcripts)], name, duration)
        if opts.diarize:
            diarizations = await asyncio.gather(*diar_parts)
            transcript = merge(transcript, join_shards([(s.offset, d) for s, d in zip(shards, diarizations)]))
        wall = time.perf_counter() - started
        log.info("transcribed", shards=len(shards), audio_s=round(duration, 3), wall_s=round(wall, 3),
                 x_real_time=round(duration / wall, 2) if wall > 0 else None)
        return msgspec.to_builtins(transcript)

    async def __call__(self, request: Request) -> Response:
        # The caller's ids (the worker sends its job's) go on every line about this request.
        with context.scope(**context.from_headers(request.headers)):
            response = await self._handle(request)
        outcome = "ok" if response.status_code < 400 else "client_error" if response.status_code < 500 else "error"
        self.metrics.requests.inc(tags={"outcome": outcome})
        return response

    async def _handle(self, request: Request) -> Response:
        if request.method != "POST" or request.url.path.rstrip("/").split("/")[-1] != "transcribe":
            return _error(404, "not_found", "POST audio to /transcribe")
        try:
            options = json.loads(request.query_params.get("options") or "{}")
            name = request.query_params.get("filename") or "<upload>"
            length = int(request.headers.get("content-length") or 0)
            if length > self.max_upload_bytes:
                return _error(413, "too_large", f"upload exceeds {self.max_upload_bytes} bytes")
            body = await request.body()
            if len(body) > self.max_upload_bytes:
                return _error(413, "too_large", f"upload exceeds {self.max_upload_bytes} bytes")
            uri = request.query_params.get("uri")
            result = await self.transcribe(uri if uri else body, options, name)
            return JSONResponse(result)
        except MediaError as exc:
            return _error(422, exc.code, exc.message)
        except (json.JSONDecodeError, msgspec.ValidationError, IAMError) as exc:
            return _error(400, getattr(exc, "code", "bad_request"), str(exc))
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a code
            log.exception("transcription failed")
            return _error(500, "internal", "internal error")

    def _local_path(self, uri: str) -> str:
        """``file://`` URIs under the configured media root only (never arbitrary paths)."""
        path = Path(uri.removeprefix("file://")).resolve()
        if self.media_root is None or not path.is_relative_to(self.media_root):
            raise MediaError(uri, "only file:// URIs under IAM_SERVE_MEDIA_ROOT are accepted")
        return os.fspath(path)


class _NoVad:
    """The ingress never runs the VAD itself: preprocess replicas did."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("speech regions come from the Preprocess deployment")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": msgspec.to_builtins(JobError(code, message))}, status_code=status)


def transcript_from(result: dict) -> Transcript:
    """A Transcript from the ingress's JSON-ready answer."""
    return msgspec.convert(result, Transcript)
