"""Ray Serve: thin deployments around ``pipeline/`` (decode+VAD+shards, batched ASR, diarization)."""
