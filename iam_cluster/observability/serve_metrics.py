"""Custom Ray Serve metrics (``ray.serve.metrics``), exported by Ray's metrics agent with a ``ray_`` prefix.

Serve adds the deployment, replica and application tags itself; one instance per replica.
"""

from __future__ import annotations

from ray.serve import metrics

#: Windows per ``generate`` call: batch fill is this over ``iam_serve_asr_max_batch_size``.
BATCH_BOUNDARIES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
WAIT_BOUNDARIES = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
SHARD_BOUNDARIES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48]


class AsrMetrics:
    """An ASR replica's batching and speed."""

    def __init__(self) -> None:
        self.batch_size = metrics.Histogram(
            "iam_serve_asr_batch_size", description="Windows decoded together in one batch",
            boundaries=BATCH_BOUNDARIES)
        self.max_batch_size = metrics.Gauge(
            "iam_serve_asr_max_batch_size", description="The replica's configured max_batch_size")
        self.window_wait = metrics.Histogram(
            "iam_serve_asr_window_wait_seconds",
            description="Seconds from a window's submission to the start of its batch's decoding",
            boundaries=WAIT_BOUNDARIES)
        self.windows_decoded = metrics.Counter(
            "iam_serve_asr_windows_decoded_total", description="Windows decoded (failed ones included)")
        self.audio_seconds = metrics.Counter(
            "iam_serve_asr_audio_seconds_total", description="Seconds of audio decoded")
        self.x_real_time = metrics.Gauge(
            "iam_serve_asr_x_real_time",
            description="Audio seconds per wall second of the replica's last batch (higher is faster)")

    def batch(self, size: int, waits: list[float], audio_s: float, wall_s: float) -> None:
        """One batch: its size, each window's wait, its audio and the wall time it took."""
        self.batch_size.observe(size)
        for wait in waits:
            self.window_wait.observe(max(0.0, wait))
        self.windows_decoded.inc(size)
        self.audio_seconds.inc(audio_s)
        if wall_s > 0:
            self.x_real_time.set(audio_s / wall_s)


class IngressMetrics:
    """Per request at the ingress: how many shards a recording was cut into."""

    def __init__(self) -> None:
        self.shards = metrics.Histogram(
            "iam_serve_shards_per_request", description="Shards a recording was cut into",
            boundaries=SHARD_BOUNDARIES)
        self.requests = metrics.Counter(
            "iam_serve_requests_total", description="Transcription requests by outcome", tag_keys=("outcome",))
