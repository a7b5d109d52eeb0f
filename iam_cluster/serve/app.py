"""The Serve application, built from typed arguments (``import_path: iam_cluster.serve.app:build_app``).

Arguments left out take their value from the settings (the environment of the process that builds
the application), which hold every default: the model, batch size, shard length, limits.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from ray.serve import Application

from iam_cluster.pipeline.runner import Limits
from iam_cluster.serve.asr import ASR
from iam_cluster.serve.diarize import Diarize
from iam_cluster.serve.ingress import Ingress
from iam_cluster.serve.preprocess import Preprocess
from iam_cluster.settings import Settings, get_settings

#: Windows one ingress request hands to the ASR deployment at a time (the replicas batch them).
INGRESS_WINDOWS = 64


class AppArgs(BaseModel):
    """Structural arguments: what the replicas load and where. Runtime knobs go in user_config.

    ``None`` means: the settings' value.
    """

    model: str | None = None
    device: str | None = None
    compute_type: str | None = None
    #: CPU threads per ASR replica (0: all cores of the replica's machine), split among copies of
    #: the model as the settings' ``cpu_replicas`` says.
    cpu_threads: int | None = Field(None, ge=0)
    asr_replicas: int = Field(1, ge=1)
    #: GPUs per ASR replica: 0 on CPU, 1 (or a fraction to pack several replicas) on GPUs.
    asr_num_gpus: float = Field(0.0, ge=0)
    asr_num_cpus: float = Field(1.0, ge=0)
    preprocess_replicas: int = Field(1, ge=1)
    diarizer: str | None = None
    diarize_replicas: int = Field(1, ge=1)
    shard_seconds: float | None = Field(None, gt=10)
    max_batch_size: int | None = Field(None, ge=1)
    media_root: str | None = None
    #: Short recordings of concurrent requests share windows (None: the settings' value).
    pack_requests: bool | None = None


def build_app(args: AppArgs | dict | None = None, settings: Settings | None = None) -> Application:
    """Wire ingress → preprocess / ASR / diarize deployments for ``serve run`` or ``serve.run``."""
    settings = settings or get_settings()
    args = args if isinstance(args, AppArgs) else AppArgs(**(args or {}))
    m, e, d = settings.models, settings.engine, settings.diarization
    batch = args.max_batch_size or e.batch_size
    asr = ASR.options(
        num_replicas=args.asr_replicas,
        ray_actor_options={"num_gpus": args.asr_num_gpus, "num_cpus": args.asr_num_cpus},
        # A replica can only batch what it is sent at once: room for two full batches.
        max_ongoing_requests=max(16, 2 * batch),
        user_config={"max_batch_size": batch, "batch_wait_timeout_s": settings.serve.batch_wait_s},
    ).bind(args.model or m.name, args.device or m.device, args.compute_type or m.compute_type,
           m.cpu_threads if args.cpu_threads is None else args.cpu_threads, str(m.cache_dir), m.cpu_replicas,
           m.malloc_arenas, m.timestamp_tokens, m.cpu_one_encode, m.cpu_schedule, m.malloc_keep_mb,
           m.blas_threads)
    preprocess = Preprocess.options(
        num_replicas=args.preprocess_replicas, ray_actor_options={"num_cpus": 0.25}
    ).bind(args.shard_seconds or e.shard_seconds)
    backend = args.diarizer or d.backend
    diarize = Diarize.options(
        num_replicas=args.diarize_replicas, ray_actor_options={"num_cpus": 0.25}
    ).bind(backend, d.diarizer_kwargs(backend, m.cache_dir))
    limits = Limits(settings.audio.max_duration_s, settings.audio.min_duration_s)
    return Ingress.options(ray_actor_options={"num_cpus": 0.1}).bind(
        preprocess, asr, diarize, limits, settings.storage.max_upload_bytes,
        args.media_root or settings.serve.media_root, INGRESS_WINDOWS,
        settings.serve.pack_requests if args.pack_requests is None else args.pack_requests,
    )
