"""CPU replicas that decode media, find speech and cut long recordings into shards (``prepare``)."""

from __future__ import annotations

import asyncio

from ray import serve

from iam_cluster.pipeline.runner import Limits, Prepared, prepare
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.pipeline.vad import SileroVad


@serve.deployment(max_ongoing_requests=16)
class Preprocess:
    """decode → VAD → shards; a bad file raises ``MediaError`` for its own request only."""

    def __init__(self, shard_seconds: float) -> None:
        self.vad = SileroVad(workers=1)  # replicas, not threads, give parallelism here
        self.shard_seconds = shard_seconds

    async def __call__(self, data: bytes | str, name: str, options: TranscribeOptions, limits: Limits) -> Prepared:
        return await asyncio.to_thread(prepare, data, options, self.vad, limits, self.shard_seconds, name)
