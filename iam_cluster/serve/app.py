"""The Serve application, built from typed arguments (``import_path: iam_cluster.serve.app:build_app``)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from ray.serve import Application

from iam_cluster.serve.asr import ASR
from iam_cluster.serve.diarize import Diarize
from iam_cluster.serve.ingress import Ingress
from iam_cluster.serve.preprocess import Preprocess


class AppArgs(BaseModel):
    """Structural arguments: what the replicas load and where. Runtime knobs go in user_config."""

    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    #: CTranslate2 threads per ASR replica (0: all cores of the replica's machine).
    cpu_threads: int = Field(0, ge=0)
    asr_replicas: int = Field(1, ge=1)
    #: GPUs per ASR replica: 0 on CPU, 1 (or a fraction to pack several replicas) on GPUs.
    asr_num_gpus: float = Field(0.0, ge=0)
    asr_num_cpus: float = Field(1.0, ge=0)
    preprocess_replicas: int = Field(1, ge=1)
    diarizer: str = "embedded"
    diarize_replicas: int = Field(1, ge=1)
    #: Long recordings are cut at silences into shards of about this many seconds.
    shard_seconds: float = Field(300.0, gt=10)
    max_upload_bytes: int = Field(2 << 30, gt=0)
    #: ``file://`` URIs under this folder may be sent instead of bytes.
    media_root: str | None = None
    max_duration_s: float = Field(4 * 3600.0, gt=0)
    max_batch_size: int = Field(8, ge=1)


def build_app(args: AppArgs | dict | None = None) -> Application:
    """Wire ingress → preprocess / ASR / diarize deployments for ``serve run`` or ``serve.run``."""
    from iam_cluster.settings import get_settings

    args = args if isinstance(args, AppArgs) else AppArgs(**(args or {}))
    diarization = get_settings().diarization
    asr = ASR.options(
        num_replicas=args.asr_replicas,
        ray_actor_options={"num_gpus": args.asr_num_gpus, "num_cpus": args.asr_num_cpus},
        # A replica can only batch what it is sent at once: room for two full batches.
        max_ongoing_requests=max(16, 2 * args.max_batch_size),
        user_config={"max_batch_size": args.max_batch_size, "batch_wait_timeout_s": 0.05},
    ).bind(args.model, args.device, args.compute_type, args.cpu_threads)
    preprocess = Preprocess.options(
        num_replicas=args.preprocess_replicas, ray_actor_options={"num_cpus": 0.25}
    ).bind(args.max_duration_s)
    diarize = Diarize.options(
        num_replicas=args.diarize_replicas, ray_actor_options={"num_cpus": 0.25}
    ).bind(args.diarizer, diarization.diarizer_kwargs(args.diarizer))
    return Ingress.options(ray_actor_options={"num_cpus": 0.1}).bind(
        preprocess, asr, diarize, args.shard_seconds, args.max_upload_bytes, args.media_root
    )
