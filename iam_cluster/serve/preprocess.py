"""CPU replicas that decode media, find speech and cut long recordings into shards."""

from __future__ import annotations

import asyncio

from ray import serve

from iam_cluster.observability import setup_from_env
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.run import window_limit
from iam_cluster.pipeline.shard import Shard, shard
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.pipeline.vad import SileroVad


@serve.deployment(max_ongoing_requests=16)
class Preprocess:
    """decode → VAD → shards; a bad file raises ``MediaError`` for its own request only."""

    def __init__(self, max_duration_s: float) -> None:
        setup_from_env("serve")
        self.vad = SileroVad(workers=1)  # replicas, not threads, give parallelism here
        self.max_duration_s = max_duration_s

    async def __call__(self, data: bytes | str, name: str, options: TranscribeOptions,
                       shard_seconds: float) -> list[Shard]:
        return await asyncio.to_thread(self._run, data, name, options, shard_seconds)

    def _run(self, data, name, options, shard_seconds) -> list[Shard]:
        audio = decode_audio(data, name=name, max_duration=self.max_duration_s)
        regions = self.vad(audio, options.vad, window_limit(options))
        return shard(audio, regions, shard_seconds)
