"""One transcription path: decode → VAD → shards → engine → speakers, for one file or many.

``prepare`` (decode, VAD, cut long recordings into shards) and ``finish`` (batched ASR over every
shard, shards joined, speakers found per shard and joined across them) are the two halves every
runner uses: ``InProcessRunner`` here, and the Serve application, whose preprocess replicas run
``prepare`` and whose ingress runs ``finish`` with remote ASR and diarization. So a file gets the
same words and speaker labels whichever path ran it.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import msgspec

from iam_cluster.errors import IAMError, MediaError
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.diarize import Diarizer
from iam_cluster.pipeline.merge import join_shards, merge
from iam_cluster.pipeline.run import Pipeline, find_speech
from iam_cluster.pipeline.shard import join_transcripts, shard
from iam_cluster.pipeline.stats import Stats
from iam_cluster.pipeline.types import (
    Audio,
    Diarization,
    ProgressHook,
    Shard,
    TranscribeOptions,
    Transcript,
    no_progress,
)
from iam_cluster.pipeline.vad import VoiceActivityDetector, speech_duration

Source = str | os.PathLike | bytes | Audio
#: Starts diarizing shards and returns a callable that waits for the results (in shard order):
#: in process the work happens when waited for, on the cluster it runs beside the ASR.
StartDiarization = Callable[[Sequence[Shard], TranscribeOptions, ProgressHook], Callable[[], list[Diarization]]]
#: Files are transcribed together in groups of about this many windows: short files share
#: windows and batches while memory stays bounded when a folder holds hours of audio.
GROUP_WINDOWS = 64


class Limits(msgspec.Struct, frozen=True):
    """Accepted recording lengths, in seconds (None: no upper limit)."""

    max_duration: float | None
    min_duration: float = 0.0


class Prepared(msgspec.Struct):
    """A decoded recording cut into shards, ready for ``finish``."""

    source: str
    duration: float
    shards: list[Shard]

    @property
    def speech(self) -> float:
        return sum(speech_duration(s.regions) for s in self.shards)


def prepare(source: Source, options: TranscribeOptions, vad: VoiceActivityDetector, limits: Limits,
            shard_seconds: float, name: str | None = None, stats: Stats | None = None) -> Prepared:
    """Decode a recording (unless it is decoded already), find its speech and cut it into shards.

    Raises:
        MediaError: the media cannot be used, or its length is outside ``limits``.
    """
    stats = stats or Stats()
    if isinstance(source, Audio):
        audio = source
    else:
        with stats.time("decode"):
            audio = decode_audio(source, name=name, max_duration=limits.max_duration,
                                 min_duration=limits.min_duration, pcm16=True)
    with stats.time("vad"):
        regions = find_speech(audio, options, vad)
    return Prepared(audio.source, audio.duration, shard(audio, regions, shard_seconds))


def finish(pipeline: Pipeline, prepared: Sequence[Prepared], options: TranscribeOptions,
           hook: ProgressHook = no_progress, diarize: StartDiarization | None = None) -> list[Transcript]:
    """Transcripts of prepared recordings: every shard's windows share ASR batches; speakers are
    found per shard and joined across shards by their embeddings.

    Args:
        diarize: starts diarization of shards; required when ``options.diarize``.
    """
    shards = [s for p in prepared for s in p.shards]
    wait = None
    if options.diarize:
        if diarize is None:
            raise IAMError("this runner has no diarizer")
        wait = diarize(shards, options, hook)
    # One language per recording, detected on its first shard, shared by the others.
    firsts = [p.shards[0] for p in prepared]
    detected = pipeline.languages([s.audio for s in firsts], [s.regions for s in firsts], options)
    languages = [lang for p, lang in zip(prepared, detected) for _ in p.shards]
    files = [k for k, p in enumerate(prepared) for _ in p.shards]
    texts = pipeline.transcribe_regions([s.audio for s in shards], [s.regions for s in shards], options,
                                        hook, languages=languages, files=files)
    diarizations = wait() if wait is not None else None
    out: list[Transcript] = []
    at = 0
    for p in prepared:
        own = slice(at, at + len(p.shards))
        at += len(p.shards)
        transcript = join_transcripts([(s.offset, t) for s, t in zip(p.shards, texts[own])], p.source, p.duration)
        if diarizations is not None:
            transcript = merge(transcript, join_shards([(s.offset, d) for s, d in zip(p.shards, diarizations[own])]))
        out.append(transcript)
    return out


def diarize_in_process(diarizer: Callable[[], Diarizer]) -> StartDiarization:
    """Diarization in this process, shard after shard, once the ASR is done (they share the cores)."""

    def start(shards: Sequence[Shard], options: TranscribeOptions, hook: ProgressHook):
        def wait() -> list[Diarization]:
            d = diarizer()
            return [d(s.audio, s.regions, num_speakers=options.num_speakers, min_speakers=options.min_speakers,
                      max_speakers=options.max_speakers, hook=hook) for s in shards]

        return wait

    return start


class InProcessRunner:
    """The engine in this process. Model and diarizer are built on first use.

    Args:
        pipeline: builds the engine (model loading is slow, so only when first needed).
        diarizer: builds the diarizer, when a transcription first asks for speakers.
        limits: accepted recording lengths.
        shard_seconds: long recordings are cut into shards of about this length.
    """

    def __init__(self, pipeline: Callable[[], Pipeline], diarizer: Callable[[], Diarizer] | None,
                 limits: Limits, shard_seconds: float) -> None:
        self._build_pipeline = pipeline
        self._build_diarizer = diarizer
        self.limits = limits
        self.shard_seconds = shard_seconds

    @functools.cached_property
    def pipeline(self) -> Pipeline:
        return self._build_pipeline()

    @functools.cached_property
    def diarizer(self) -> Diarizer:
        if self._build_diarizer is None:
            raise IAMError("no diarizer is configured")
        return self._build_diarizer()

    def prepare(self, source: Source, options: TranscribeOptions, name: str | None = None) -> Prepared:
        return prepare(source, options, self.pipeline.vad, self.limits, self.shard_seconds, name,
                       self.pipeline.stats)

    def run(self, source: Source, options: TranscribeOptions, hook: ProgressHook = no_progress,
            name: str | None = None) -> Transcript:
        """Transcribe one recording (a path, its bytes, or decoded Audio).

        Raises:
            MediaError: the media cannot be used.
            OptionsError: the options ask for what the model cannot do.
        """
        prepared = self.prepare(source, options, name)
        return finish(self.pipeline, [prepared], options, hook, diarize_in_process(lambda: self.diarizer))[0]

    def run_together(self, sources: Sequence[Source], options: TranscribeOptions,
                     hook: ProgressHook = no_progress) -> list[Transcript]:
        """Transcribe several recordings at once (their windows share batches), in order.

        Raises:
            MediaError: one of them cannot be used (``run_many`` reports such files one by one).
        """
        prepared = [self.prepare(s, options) for s in sources]
        return finish(self.pipeline, prepared, options, hook, diarize_in_process(lambda: self.diarizer))

    def run_many(self, sources: Iterable[str | os.PathLike], options: TranscribeOptions,
                 hook: ProgressHook = no_progress) -> Iterator[tuple[Path, Transcript | IAMError]]:
        """Transcribe many files, yielding ``(path, transcript or error)`` as groups finish.

        Files are decoded and VAD-scanned in a background thread while the model works, and
        grouped so that short files share windows and batches. A file that cannot be used yields
        its error and does not stop the others.
        """
        paths = [Path(p) for p in sources]
        loaded: queue.Queue = queue.Queue(maxsize=256)
        self.pipeline  # noqa: B018 - load the model before the reader thread competes for the cores

        def load() -> None:
            for path in paths:
                try:
                    loaded.put((path, self.prepare(path, options)))
                except IAMError as exc:
                    loaded.put((path, exc))
                except Exception as exc:  # keep going; the consumer reports it as this file's failure
                    loaded.put((path, MediaError(str(path), f"could not be read: {exc}")))
            loaded.put(None)

        threading.Thread(target=load, name="iam-decode", daemon=True).start()
        group: list[tuple[Path, Prepared]] = []
        windows, finished = 0.0, 0
        start = diarize_in_process(lambda: self.diarizer)
        while True:
            item = loaded.get()
            if item is not None and isinstance(item[1], IAMError):
                finished += 1
                hook("files", finished, len(paths))
                yield item
                continue
            if item is not None:
                group.append(item)
                windows += max(1.0, item[1].speech / options.chunk_length)
            if group and (item is None or windows >= GROUP_WINDOWS):
                for (path, _), transcript in zip(group, finish(self.pipeline, [g[1] for g in group], options,
                                                               hook, start)):
                    finished += 1
                    hook("files", finished, len(paths))
                    yield path, transcript
                group, windows = [], 0.0
            if item is None:
                return
