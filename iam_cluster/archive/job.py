"""The archive job on Ray Data: read + decode + VAD in parallel tasks, speech of many files packed into
shared windows, an actor pool of ASR workers, outputs written by the workers, manifest by the driver.

Stages (one Ray Data dataset, streamed, so memory stays flat in the archive's size)::

    groups of items ──map_batches(prepare_group)──> packs ──map_batches(Transcriber, concurrency=N)──> records
    (from_items)        tasks: read a member,         (files whose speech      actors: one model each,        │
                        decode, level, VAD, shards     fills ~64 windows)       ``finish`` + export writes    ▼
                                                                                            driver: manifest.jsonl

Everything a file goes through is ``pipeline.runner.prepare`` / ``finish``: the same words as the
CLI, the worker and the Serve cluster give it.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import msgspec
import numpy as np

from iam_cluster.archive.manifest import (
    FAILED,
    OK,
    Manifest,
    Record,
    Summary,
    write_part,
)
from iam_cluster.archive.outputs import Sink, output_stems, write_outputs
from iam_cluster.archive.sources import Item, Source, list_items, read_items
from iam_cluster.errors import IAMError
from iam_cluster.observability.logging import get_logger
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.settings import (
    AudioSettings,
    DiarizationSettings,
    EngineSettings,
    ModelSettings,
    get_settings,
)

log = get_logger(__name__)
#: A pack (one ASR call of a worker) holds files whose speech fills about this many windows.
PACK_WINDOWS = 64


class JobConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the job's tasks and actors need (sent to them; holds no secrets).

    Attributes:
        workers: ASR actors (one model each).
        gpus_per_worker: ``num_gpus`` of each actor (0: CPU actors).
        cpus_per_worker: ``num_cpus`` Ray reserves for each actor.
        group_files: Items read by one task (files packed together come from one group): one pack
            of short files by default.
        pack_windows: Windows of speech per pack handed to an actor.
    """

    source: Source
    sink: Sink
    options: TranscribeOptions
    formats: tuple[str, ...] = ("json", "txt", "srt", "vtt")
    models: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    audio: AudioSettings = AudioSettings()
    diarization: DiarizationSettings = DiarizationSettings()
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    group_files: int = PACK_WINDOWS
    pack_windows: int = PACK_WINDOWS

    def settings(self):
        """The process's settings with this job's engine sections."""
        return msgspec.structs.replace(get_settings(), models=self.models, engine=self.engine, audio=self.audio,
                                       diarization=self.diarization)


class Packed(msgspec.Struct):
    """What a prepare task hands an ASR actor: items, their prepared audio (None: failed) and times."""

    items: list[Item]
    prepared: list  # Prepared | None
    failures: list[Record]
    seconds: list[float]
    #: Wall clock (``time.time()``) when the pack's first file began to be read.
    started: float = 0.0


# --- stage 1: read, decode, VAD (tasks) ----------------------------------------------------------

@functools.cache
def _vad(config: JobConfig):
    from iam_cluster.runner import make_vad

    return make_vad(config.settings())  # one per worker process, reused by its later tasks


def prepare_group(batch: dict[str, np.ndarray], config: JobConfig) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data task: prepares one group of items, yielding packs as their speech fills the windows."""
    from iam_cluster.pipeline.runner import Limits, prepare

    limits = Limits(config.audio.max_duration_s, config.audio.min_duration_s)
    for raw in batch["items"]:
        items = msgspec.msgpack.decode(raw, type=list[Item])
        pack, windows = Packed([], [], [], [], time.time()), 0.0
        for item, media in read_items(config.source, items):
            t0 = time.perf_counter()
            if isinstance(media, IAMError):
                pack.failures.append(_failure(item, media, 0.0))
                continue
            try:
                p = prepare(media, config.options, _vad(config), limits, config.engine.shard_seconds, name=item.key)
            except Exception as exc:  # noqa: BLE001 - a bad file fails alone, with its code
                pack.failures.append(_failure(item, exc, time.perf_counter() - t0))
                continue
            pack.items.append(item)
            pack.prepared.append(p)
            pack.seconds.append(time.perf_counter() - t0)
            windows += max(1.0, p.speech / config.options.chunk_length)
            if windows >= config.pack_windows:
                yield _row(pack)
                pack, windows = Packed([], [], [], [], time.time()), 0.0
        if pack.items or pack.failures:
            yield _row(pack)


def _row(pack: Packed) -> dict[str, np.ndarray]:
    column = np.empty(1, dtype=object)
    column[0] = pickle.dumps(pack, protocol=5)
    return {"pack": column}


def _failure(item: Item, exc: BaseException, seconds: float) -> Record:
    code = exc.code if isinstance(exc, IAMError) else "internal"
    message = exc.message if isinstance(exc, IAMError) else f"{type(exc).__name__}: {exc}"
    return Record(item.key, item.fingerprint, FAILED, code, message, seconds=round(seconds, 3))


# --- stage 2: ASR (actors) -----------------------------------------------------------------------

class Transcriber:
    """Ray Data actor: one model, transcribing packs (their files share windows and batches) and
    writing each file's outputs; returns the manifest records."""

    def __init__(self, config: JobConfig, stems: dict[str, str]) -> None:
        from iam_cluster.runner import in_process_runner

        self.config, self.stems = config, stems
        self.runner = in_process_runner(config.settings())
        self.runner.pipeline  # noqa: B018 - load the model now, not inside the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(batch["pack"]), dtype=object)
        started = np.empty(len(batch["pack"]), dtype=np.float64)
        for i, raw in enumerate(batch["pack"]):
            pack = pickle.loads(raw)
            records = self.transcribe(pack)
            write_part(self.config.sink, records)  # what a killed run finished is not redone
            out[i], started[i] = msgspec.msgpack.encode(records), pack.started
            del pack
            _trim_heap()
        return {"records": out, "started": started}

    def transcribe(self, pack: Packed) -> list[Record]:
        from iam_cluster.pipeline.runner import diarize_in_process, finish

        records = list(pack.failures)
        if not pack.items:
            return records
        t0 = time.perf_counter()
        try:
            transcripts = finish(self.runner.pipeline, pack.prepared, self.config.options,
                                 diarize=diarize_in_process(lambda: self.runner.diarizer))
        except Exception as exc:  # the pack's files fail (and are redone by a rerun)
            log.exception("archive.pack_failed", files=len(pack.items))
            return records + [_failure(it, exc, s) for it, s in zip(pack.items, pack.seconds)]
        asr = time.perf_counter() - t0
        speech = sum(max(p.speech, 1e-3) for p in pack.prepared)
        for item, t, p, prep in zip(pack.items, transcripts, pack.prepared, pack.seconds):
            try:
                keys = write_outputs(self.config.sink, self.stems[item.key], t, self.config.formats)
            except Exception as exc:  # noqa: BLE001 - an output that cannot be written fails its file
                records.append(_failure(item, exc, prep))
                continue
            records.append(Record(
                item.key, item.fingerprint, OK, duration=round(t.duration, 3), language=t.language,
                words=sum(len(s.words) or len(s.text.split()) for s in t.segments), speakers=len(t.speakers),
                seconds=round(prep + asr * max(p.speech, 1e-3) / speech, 3), outputs=keys))
        return records


def _trim_heap() -> None:
    """Hand freed heap pages back to the system after a pack (glibc keeps them otherwise, and the
    actor's resident memory crept up pack after pack: 945 MB after 100 files, 1,147 MB after 2,000)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# --- the driver ----------------------------------------------------------------------------------

def groups_of(source: Source, items: Sequence[Item], group_files: int, parallelism: int) -> list[list[Item]]:
    """Items split into read groups; a tar (read from its start by each group) gets few, long groups.

    Otherwise a group is ``group_files`` files: by default one pack of short files (each file counts at
    least one window of the pack), so no group ends in a half-empty pack and the readers stay about a
    pack ahead of the ASR actors. On 400 clips (2 cores) groups of 100 made eight ASR calls, four of
    them of 36 files, where the CLI makes seven; with whole packs the job makes seven too (on a
    running cluster, medians of 5 rounds: groups of 128 38.0 s, groups of 64 37.8 s).
    """
    size = group_files
    if source.kind == "tar":
        size = max(group_files, math.ceil(len(items) / max(1, parallelism)))
    return [list(items[i : i + max(1, size)]) for i in range(0, len(items), max(1, size))]


def asr_threads(config: JobConfig, cluster_cpus: float, nodes: int) -> int:
    """CTranslate2 threads of each CPU ASR actor when none were asked for.

    Ray sets ``OMP_NUM_THREADS`` to an actor's ``num_cpus`` (1), which CTranslate2 takes as its default:
    one thread, however many cores the node has. On one node the actors share its cores (the read
    tasks mostly wait on them); across nodes each actor gets its reservation.
    """
    if config.models.cpu_threads or config.gpus_per_worker:
        return config.models.cpu_threads
    if nodes == 1:
        return max(1, int(cluster_cpus) // max(1, config.workers))
    return max(1, math.ceil(config.cpus_per_worker))


#: Object store of a local Ray, MiB. The packs pass through it, and every page of it they touch stays
#: in the ASR worker's RSS as shared memory: with Ray's default (30 % of the memory) the worker's RSS
#: grew with the archive (643 -> 803 MB from 100 to 2,000 clips) while its own memory barely did
#: (638 -> 712 MB); a small store is reused instead (128 MB: 636 -> 748 MB, and no slower). A pack
#: larger than the store goes to Ray's fallback allocation on disk (a 45-min file through an 80-MB
#: store: transcribed). ``benchmarks/results/archive-rss-*.md``.
LOCAL_OBJECT_STORE_MB = 128


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int | None = None) -> None:
    """Connects to the cluster (``address`` or ``RAY_ADDRESS``, as under ``ray job submit``) or starts a
    local one whose workers import this same package.

    Args:
        object_store_mb: size of a local Ray's object store (default ``LOCAL_OBJECT_STORE_MB``).
    """
    import ray

    if ray.is_initialized():
        return
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:  # local workers inherit the environment: make them import this checkout
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    local = not (address or os.environ.get("RAY_ADDRESS"))
    # Start-up is a fixed cost of every run: no dashboard, no usage-stats reporter, workers' logs not
    # streamed back to the driver.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    store = (object_store_mb or LOCAL_OBJECT_STORE_MB) * 2**20 if local else None
    # "local": a Ray of its own even when a `ray start` cluster runs on this machine (``ray.init()``
    # would join that one, which refuses the local Ray's sizes).
    ray.init(address="local" if local else address, num_cpus=num_cpus if local else None,
             object_store_memory=store, include_dashboard=False, log_to_driver=False, configure_logging=False)


def run(config: JobConfig, progress: Callable[[str], None] | None = None, *, address: str | None = None,
        num_cpus: int | None = None, object_store_mb: int | None = None) -> Summary:
    """Transcribes every input not yet done; returns the summary (also written as ``summary.json``).

    Raises:
        ArchiveError: the input is refused as a whole (unsafe names, over its limits, unreadable).
    """
    import ray

    started, clock = time.perf_counter(), time.time()
    first_read = last_output = None
    items = list_items(config.source)
    keys = [i.key for i in items]
    stems = output_stems(keys)
    manifest = Manifest(config.sink)
    todo = [i for i in items if not manifest.done(i)]
    skipped = len(items) - len(todo)
    audio, done = 0.0, 0
    if todo:
        init_ray(address, num_cpus, object_store_mb)
        cpus = ray.cluster_resources().get("CPU", 1)
        parallelism = max(1, int(cpus))
        threads = asr_threads(config, cpus, sum(n["Alive"] for n in ray.nodes()))
        config = msgspec.structs.replace(config, models=msgspec.structs.replace(config.models, cpu_threads=threads))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        groups = groups_of(config.source, todo, config.group_files, parallelism)
        ds = ray.data.from_items([{"items": msgspec.msgpack.encode(g)} for g in groups],
                                 override_num_blocks=len(groups))
        # Retried when a reader dies (its own remote args also keep Ray Data from fusing the readers
        # into the ASR actors: reading and decoding must stay parallel tasks beside the model).
        ds = ds.map_batches(prepare_group, fn_kwargs={"config": config}, batch_size=1, num_cpus=1,
                            ray_remote_args_fn=lambda: {"max_retries": 3})
        gpu = {"num_gpus": config.gpus_per_worker} if config.gpus_per_worker else {}
        ds = ds.map_batches(Transcriber, fn_constructor_kwargs={"config": config, "stems": stems}, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=config.workers), num_cpus=config.cpus_per_worker, **gpu)
        reporter = _Progress(len(todo), skipped, progress)
        for row in ds.iter_rows():
            records = msgspec.msgpack.decode(row["records"], type=list[Record])
            manifest.append(records)
            last_output = time.time()
            first_read = min(first_read or row["started"], row["started"])
            done += len(records)
            audio += sum(r.duration for r in records)
            reporter.update(records, audio)
        reporter.finish()
    wall = time.perf_counter() - started
    manifest.close(keys)
    summary = manifest.summary(keys, skipped, wall, audio, config.workers)
    if first_read is not None:  # the fixed cost (listing, starting Ray, loading models) vs the work itself
        summary.startup_seconds = round(first_read - clock, 2)
        summary.processing_seconds = round(last_output - first_read, 2)
    manifest.write_summary(summary)
    return summary


class _Progress:
    """Files, audio hours and the time left, at most every two seconds."""

    def __init__(self, total: int, skipped: int, out: Callable[[str], None] | None) -> None:
        self.total, self.skipped, self.out = total, skipped, out
        self.done = self.failed = 0
        self.t0 = self.last = time.perf_counter()

    def update(self, records: Sequence[Record], audio: float) -> None:
        self.done += len(records)
        self.failed += sum(r.status != OK for r in records)
        self.audio = audio
        now = time.perf_counter()
        if self.out is not None and (now - self.last >= 2.0 or self.done == self.total):
            self.last = now
            elapsed = now - self.t0
            eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
            self.out(f"files {self.done}/{self.total} ({self.failed} failed, {self.skipped} already done), "
                     f"{audio / 3600:.3f} h audio, {audio / max(elapsed, 1e-9):.1f}x real time, ETA {eta:.0f} s")

    def finish(self) -> None:
        if self.out is not None and self.done != self.total:
            self.out(f"files {self.done}/{self.total} ({self.failed} failed)")
