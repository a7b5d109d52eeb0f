"""The Serve application's custom metrics (``ray.serve.metrics``) and its JSON lines carrying the caller's ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from iam_cluster.observability import context
from iam_cluster.pipeline.runner import Limits
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.serve.client import ServeRunner
from tests.fixtures.services import http_get, value

pytestmark = pytest.mark.slow


def ray_samples(url: str, timeout: float = 60.0, **wanted) -> dict:
    """Ray's metrics once every ``name=minimum`` in ``wanted`` is there (Ray exports every few seconds)."""
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout
    while True:
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(http_get(url)[1].decode()) for s in f.samples}
        if all((value(samples, name) or 0) >= minimum for name, minimum in wanted.items()):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"Ray did not export {wanted} in {timeout} s")
        time.sleep(1.0)


def test_serve_metrics_and_job_ids_in_replica_logs(serve_app, ray_metrics_url, harvard):
    import ray

    _, address, settings = serve_app
    job_id = "job-for-serve-logs-0001"
    with context.scope(request_id="req-serve-0001", job_id=job_id, user_id="u-1"):  # as the worker sends them
        transcript = ServeRunner(address, Limits(None)).run(harvard[1], TranscribeOptions())
    assert transcript.text

    samples = ray_samples(ray_metrics_url, ray_iam_serve_asr_windows_decoded_total=1,
                          ray_iam_serve_shards_per_request_count=1, ray_iam_serve_requests_total=1,
                          ray_iam_serve_asr_max_batch_size=1)  # gauges can reach an export after counters
    assert value(samples, "ray_iam_serve_asr_batch_size_count") >= 1
    assert value(samples, "ray_iam_serve_asr_window_wait_seconds_count") >= 1
    assert value(samples, "ray_iam_serve_asr_audio_seconds_total") >= transcript.duration - 0.5
    assert value(samples, "ray_iam_serve_asr_max_batch_size") == settings.engine.batch_size
    assert value(samples, "ray_iam_serve_asr_x_real_time") > 0
    assert value(samples, "ray_iam_serve_requests_total", outcome="ok") >= 1

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    deadline, found = time.monotonic() + 30, []
    while not found and time.monotonic() < deadline:
        for path in logs.glob("*"):
            if path.is_file():
                found += [line for line in path.read_text(errors="replace").splitlines() if job_id in line]
        time.sleep(0.5)
    lines = [json.loads(line[line.index("{"):]) for line in found if line.lstrip().startswith("{")]
    ours = [line for line in lines if line.get("event") == "transcribed"]
    assert ours and ours[0]["request_id"] == "req-serve-0001" and ours[0]["service"] == "serve"
    assert ours[0]["shards"] == 1 and ours[0]["audio_s"] > 0
