"""Diarization replicas: one shard at a time, turns plus embeddings for joining speakers across shards."""

from __future__ import annotations

import asyncio

from ray import serve

from iam_cluster.pipeline.types import Diarization, Shard, TranscribeOptions


@serve.deployment(max_ongoing_requests=8)
class Diarize:
    def __init__(self, backend: str, options: dict) -> None:
        from iam_cluster.pipeline.diarize import make_diarizer

        self.diarizer = make_diarizer(backend, **options)

    async def __call__(self, part: Shard, options: TranscribeOptions) -> Diarization:
        return await asyncio.to_thread(
            self.diarizer, part.audio, part.regions, num_speakers=options.num_speakers,
            min_speakers=options.min_speakers, max_speakers=options.max_speakers,
        )


def diarize_remotely(handle):
    """A ``StartDiarization`` that sends every shard to the Diarize deployment at once."""

    def start(shards, options, hook):
        responses = [handle.remote(s, options) for s in shards]
        return lambda: [r.result() for r in responses]

    return start
