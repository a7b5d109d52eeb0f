"""ASR replicas: windows of DIFFERENT requests share one CTranslate2 batch through ``@serve.batch``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import Future

import msgspec
from ray import serve

from iam_cluster.pipeline.types import SAMPLE_RATE, TranscribeOptions, WindowJob, WindowText


@serve.deployment(max_ongoing_requests=64)
class ASR:
    """A Whisper model on one replica (``num_gpus`` from the app's arguments).

    Runtime knobs come from ``user_config`` through ``reconfigure`` (``build_app`` passes the
    settings' values; a config file may change them): ``max_batch_size``, ``batch_wait_timeout_s``
    and ``beam_size`` (when set, it overrides the requests' beam size).
    """

    def __init__(self, model: str, device: str, compute_type: str, cpu_threads: int, cache_dir: str,
                 cpu_replicas: int = 0, malloc_arenas: int = 1, timestamp_tokens: str = "auto",
                 one_encode: bool | None = None, cpu_schedule: str = "auto",
                 malloc_keep_mb: int = 256, blas_threads: int = 1) -> None:
        from iam_cluster.observability import setup_from_env
        from iam_cluster.observability.serve_metrics import AsrMetrics
        from iam_cluster.pipeline.asr import WhisperASR

        setup_from_env("serve")
        self.metrics = AsrMetrics()

        self.asr = WhisperASR(model, device, compute_type, cpu_threads, cpu_replicas, cache_dir=cache_dir,
                              malloc_arenas=malloc_arenas, timestamp_tokens=timestamp_tokens, one_encode=one_encode,
                              cpu_schedule=cpu_schedule, malloc_keep_mb=malloc_keep_mb,
                              blas_threads=blas_threads)
        self.beam_size: int | None = None
        self.max_batch_size: int | None = None
        #: How many batches of each size this replica decoded (bounded: one key per size).
        self.batch_sizes: Counter[int] = Counter()

    def reconfigure(self, config: dict) -> None:
        """Apply the knobs ``config`` names; the others keep their value."""
        if "max_batch_size" in config:
            self.max_batch_size = int(config["max_batch_size"])
            self.decode_window.set_max_batch_size(self.max_batch_size)
            self.metrics.max_batch_size.set(self.max_batch_size)
        if "batch_wait_timeout_s" in config:
            self.decode_window.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))
        if "beam_size" in config:
            self.beam_size = config["beam_size"]

    async def info(self) -> dict:
        return {"name": self.asr.name, "multilingual": self.asr.is_multilingual, "device": self.asr.device,
                "replicas": self.asr.replicas}

    async def detect_languages(self, audios: list) -> list[tuple[str, float]]:
        return await asyncio.to_thread(self.asr.detect_languages, audios)

    async def batch_sizes_seen(self) -> dict[int, int]:
        """Batches decoded so far, by size."""
        return dict(self.batch_sizes)

    @serve.batch
    async def decode_window(self, jobs: list[WindowJob]) -> list:
        """Decode windows of many requests together; one list in, one result per window out.

        Windows are grouped by what must match inside one ``generate`` call (language, options);
        a group that fails yields its exception for each of its windows only.
        """
        self.batch_sizes[len(jobs)] += 1
        started, t0 = time.time(), time.perf_counter()
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            options = job.options
            if self.beam_size:
                options = msgspec.structs.replace(options, beam_size=int(self.beam_size))
            groups[(job.language, options, job.align, job.timestamps, job.fit_input)].append(i)
        results: list = [None] * len(jobs)

        def submit(key: tuple, idx: list[int]) -> Future:
            language, options, align, timestamps, fit_input = key
            try:
                return self.asr.submit([jobs[i].audio for i in idx], language, options, align, timestamps, fit_input,
                                       [jobs[i].continue_tail for i in idx], [jobs[i].source for i in idx])
            except Exception as exc:  # noqa: BLE001 - the failure belongs to these windows only
                failed: Future = Future()
                failed.set_exception(exc)
                return failed

        # Every group at once: the model's copies take their work in turn (``copies.CopyPool``);
        # with one copy (a GPU) each is decoded as it is submitted, here in a thread.
        futures = await asyncio.to_thread(lambda: [submit(key, idx) for key, idx in groups.items()])
        for idx, submitted in zip(groups.values(), futures):
            try:
                texts = await asyncio.wrap_future(submitted)
            except Exception as exc:  # noqa: BLE001 - the failure belongs to these windows only
                texts = [exc] * len(idx)
            for i, text in zip(idx, texts):
                results[i] = text
        if self.max_batch_size:  # again with each batch: a gauge set once at start can miss Ray's first export
            self.metrics.max_batch_size.set(self.max_batch_size)
        self.metrics.batch(len(jobs), [started - j.submitted_at for j in jobs if j.submitted_at],
                           sum(len(j.audio) for j in jobs) / SAMPLE_RATE, time.perf_counter() - t0)
        return results


class RemoteASR:
    """A ``SpeechRecognizer`` whose windows go to the ASR deployment.

    Its methods block, so a Pipeline using it runs in a worker thread of the ingress; the windows
    of one call are all in flight at once, and ``@serve.batch`` mixes them with other requests'.
    """

    def __init__(self, handle) -> None:
        self.handle = handle
        self._info: dict | None = None

    def _about(self) -> dict:
        if self._info is None:
            self._info = self.handle.info.remote().result()
        return self._info

    @property
    def name(self) -> str:
        return self._about()["name"]

    @property
    def is_multilingual(self) -> bool:
        return self._about()["multilingual"]

    @property
    def replicas(self) -> int:
        """The deployment's model copies (the engine lays out later passes as in process)."""
        return self._about()["replicas"]

    def detect_languages(self, audios) -> list[tuple[str, float]]:
        return self.handle.detect_languages.remote(list(audios)).result()

    def decode(self, audios, language: str, options: TranscribeOptions, align: bool = True,
               timestamps: bool = True, fit_input: bool = False, tails=None, sources=None) -> list[WindowText]:
        return self.submit(audios, language, options, align, timestamps, fit_input, tails, sources).result()

    def submit(self, audios, language: str, options: TranscribeOptions, align: bool = True,
               timestamps: bool = True, fit_input: bool = False, tails=None, sources=None) -> Sent:
        """The call's windows sent at once (``@serve.batch`` mixes them with other requests')."""
        tails = [True] * len(audios) if tails is None else list(tails)
        sources = window_sources(len(audios), sources)
        return Sent([
            self.handle.decode_window.remote(WindowJob(a, language, options, align, timestamps, fit_input,
                                                       continue_tail=tail, source=source, submitted_at=time.time()))
            for a, tail, source in zip(audios, tails, sources)
        ])


class Sent:
    """A call's windows in flight on the ASR deployment; ``result()`` waits for their texts."""

    def __init__(self, responses: list) -> None:
        self.responses = responses

    def result(self) -> list[WindowText]:
        out = [r.result() for r in self.responses]
        for item in out:
            if isinstance(item, Exception):
                raise item
        return out


def window_sources(n: int, sources=None) -> list[str | None]:
    """Keys of the recordings ``n`` windows of one call hold, unique across calls (two requests'
    file 0 are two recordings; ``asr.cpu_parts`` lets only one recording's windows share a CPU
    ``generate``): a window packed from several recordings (None) keeps None, and a call that
    names no sources is one recording."""
    call = uuid.uuid4().hex
    if sources is None:
        return [call] * n
    return [None if s is None else f"{call}/{s}" for s in sources]
