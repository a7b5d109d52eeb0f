"""Diarization replicas: one shard at a time, turns plus embeddings for global clustering."""

from __future__ import annotations

import asyncio

from ray import serve

from iam_cluster.observability import setup_from_env
from iam_cluster.pipeline.shard import Shard
from iam_cluster.pipeline.types import Diarization


@serve.deployment(max_ongoing_requests=8)
class Diarize:
    def __init__(self, backend: str, options: dict) -> None:
        from iam_cluster.pipeline.diarize import make_diarizer

        setup_from_env("serve")

        self.diarizer = make_diarizer(backend, **options)

    async def __call__(self, part: Shard, num: int | None, low: int | None, high: int | None) -> Diarization:
        return await asyncio.to_thread(self.diarizer, part.audio, part.regions, num, low, high)
