"""The one transcription path: a ``Runner`` runs recordings in process or on the Serve cluster.

The command line, the worker, archive jobs and the OpenAI-compatible endpoint all get their runner
from ``make_runner(settings)``; nothing else builds models, diarizers or cluster clients.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from iam_cluster.errors import IAMError
from iam_cluster.pipeline.types import Audio, ProgressHook, TranscribeOptions, Transcript, no_progress
from iam_cluster.settings import Settings

Source = str | os.PathLike | bytes | Audio


class Runner(Protocol):
    """Runs transcriptions; every implementation gives a file the same transcript."""

    def run(self, source: Source, options: TranscribeOptions, hook: ProgressHook = no_progress,
            name: str | None = None) -> Transcript:
        """Transcribe one recording.

        Raises:
            MediaError: the media cannot be used (never worth retrying).
            OptionsError: the options ask for what the deployment cannot do.
        """
        ...

    def run_many(self, sources: Iterable[str | os.PathLike], options: TranscribeOptions,
                 hook: ProgressHook = no_progress) -> Iterator[tuple[Path, Transcript | IAMError]]:
        """Transcribe many files (sharing batches), yielding each file's transcript or error."""
        ...


def make_runner(settings: Settings) -> Runner:
    """The runner the settings ask for: the Serve cluster at ``IAM_SERVE_ADDRESS``, else in process."""
    from iam_cluster.pipeline.runner import Limits

    limits = Limits(settings.audio.max_duration_s, settings.audio.min_duration_s)
    if settings.serve.address:
        from iam_cluster.serve.client import ServeRunner

        return ServeRunner(settings.serve.address, limits, timeout=settings.serve.timeout_s)
    return in_process_runner(settings)


def in_process_runner(settings: Settings):
    """An ``InProcessRunner`` for the settings' model, engine, limits and diarizer."""
    from iam_cluster.pipeline.diarize import make_diarizer
    from iam_cluster.pipeline.runner import InProcessRunner, Limits

    m, e, d = settings.models, settings.engine, settings.diarization

    def pipeline():
        from iam_cluster.pipeline.asr import WhisperASR
        from iam_cluster.pipeline.run import Pipeline
        from iam_cluster.pipeline.stats import Stats

        stats = Stats()
        asr = WhisperASR(m.name, m.device, m.compute_type, m.cpu_threads, m.cpu_replicas, cache_dir=m.cache_dir,
                         allow_download=m.allow_download, stats=stats, malloc_arenas=m.malloc_arenas, malloc_keep_mb=m.malloc_keep_mb, blas_threads=m.blas_threads,
                         timestamp_tokens=m.timestamp_tokens, one_encode=m.cpu_one_encode,
                         cpu_schedule=m.cpu_schedule)
        return Pipeline(asr, e.batch_size, make_vad(settings), stats)

    return InProcessRunner(pipeline, lambda: make_diarizer(d.backend, **d.diarizer_kwargs(cache_dir=m.cache_dir)),
                           Limits(settings.audio.max_duration_s, settings.audio.min_duration_s),
                           e.shard_seconds)


def make_vad(settings: Settings):
    """The voice activity detector the settings ask for (what ``prepare`` runs wherever it runs)."""
    from iam_cluster.pipeline.vad import SileroVad

    return SileroVad(workers=settings.engine.vad_workers or None)
