"""Settings: one frozen struct per concern, read once from the environment by ``get_settings()``.

Each field is read from one environment variable: the struct's ``env_prefix`` followed by the
field's name in upper case (``DATABASE_`` + ``url`` = ``DATABASE_URL``), unless ``env_names``
names it otherwise. msgspec converts and validates the strings, so a bad value fails at start-up
with the variable's name. Mapping fields collect every variable under their prefix
(``STRIPE_PRICE_PRO`` -> ``price["pro"]``); tuple fields split on commas.

These structs are the only home of every default; the command line, the API, the worker and the
Serve application read them at their edges and pass values down (``pipeline/`` reads none).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import msgspec

from iam_cluster.envconf import from_env
from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.models import DEFAULT_CACHE_DIR

Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
#: Shortest JWT signing secret accepted (HS256 wants at least its 256-bit output).
MIN_SECRET_BYTES = 32


class ModelSettings(msgspec.Struct, frozen=True):
    """Which Whisper model runs, where, and where assembled model files are cached."""

    env_prefix: ClassVar[str] = "IAM_"
    env_names: ClassVar[dict[str, tuple[str, ...]]] = {"name": ("IAM_MODEL",)}

    #: ``tiny.en`` (embedded default), ``base`` (embedded multilingual), a CTranslate2 folder,
    #: or a faster-whisper name (``large-v3``, ``turbo``, ``distil-large-v3``...).
    name: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    #: CPU threads of the model in all; 0: the process's cores.
    cpu_threads: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Copies of the model on CPU, each decoding its share of a batch on its own threads; 0: one
    #: per thread, up to four (``pipeline.asr.cpu_layout``). Ignored on GPUs.
    cpu_replicas: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: glibc malloc arenas of a process that decodes (``pipeline.heap``); 0: glibc's default
    #: (eight per core). One: the same wall time with 10-25 % less peak memory on CPU.
    malloc_arenas: Annotated[int, msgspec.Meta(ge=0)] = 1
    #: MB of freed C heap a CPU decoding process keeps for reuse, large buffers included
    #: (``pipeline.heap.keep_freed``); 0: glibc's default, which maps and unmaps every buffer over
    #: 32 MB (a 30-s encode's attention scores) and makes the kernel zero it each time. 2-core
    #: Zen 4 EPYC: the long-form set 8 % faster (1-15 % per file), the same words, peak memory no
    #: higher on it or on the 120-clip folder (``benchmarks/results/rtf-*-heap-zen4-amd-cpu.md``).
    malloc_keep_mb: Annotated[int, msgspec.Meta(ge=0)] = 256
    #: Threads of numpy's BLAS in a CPU decoding process (``pipeline.asr.limit_blas``); 0: numpy's
    #: own (one per core), whose threads spin between the windows' small matrix products on the
    #: cores the model decodes on.
    blas_threads: Annotated[int, msgspec.Meta(ge=0)] = 1
    #: Whisper's timestamp tokens in a window's first decode (``WhisperASR``): ``on`` (Whisper
    #: writes as its sequential decoder does), ``off`` (the whole window, segments cut from the
    #: aligned words; windows where a stretched word shows speech it jumped over are decoded again
    #: with them) or ``auto``: off on a GPU (H200: the long-form set 1.5x faster, same WER), on on
    #: CPU (where the second decodes cost more than the tokens).
    timestamp_tokens: Literal["auto", "on", "off"] = "auto"
    #: On CPU, one encoder call at a time across the copies (``WhisperASR``'s ``one_encode``): a
    #: lower memory peak for some speed. Unset: on where a batch goes window by window (AMX Xeon:
    #: the 120-clip folder's peak 407 -> 368 MB, 14 % slower; the long-form set 2 % slower, its
    #: peak 502 -> 470 MB), off where it goes in parts (there a part's 4-window ``generate`` is
    #: the peak: turns saved nothing and cost the folder 27 %).
    cpu_one_encode: bool | None = None
    #: How the CPU copies share a batch (``WhisperASR``'s ``cpu_schedule``): ``window`` (one window
    #: per ``generate``), ``part`` (a contiguous part of the batch per copy) or ``auto``: ``window``
    #: with Intel MKL (same speed, less memory); elsewhere (oneDNN: AMD) each recording's windows in
    #: parts (20 % faster on long recordings) and windows packed from several recordings one by one
    #: (the 120-clip folder at x1.28 the batched peer's RSS, not x1.74; ``copies.cpu_parts``).
    cpu_schedule: Literal["auto", "window", "part"] = "auto"
    cache_dir: Path = DEFAULT_CACHE_DIR
    #: Let faster-whisper fetch named models from the Hugging Face Hub when not cached.
    allow_download: bool = False


class EngineSettings(msgspec.Struct, frozen=True):
    """How the engine runs: batching, sharding of long recordings, VAD threads."""

    env_prefix: ClassVar[str] = "IAM_"

    #: 30-s windows decoded by one CTranslate2 ``generate`` call (in process, and the Serve ASR
    #: replicas' largest batch).
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    #: Long recordings are cut at silences into shards of about this many seconds; shards are
    #: diarized separately and their speakers joined, on every path alike.
    shard_seconds: Annotated[float, msgspec.Meta(gt=10)] = 300.0
    #: Threads that scan a long recording's parts with the VAD (0: up to 4, by cores).
    vad_workers: Annotated[int, msgspec.Meta(ge=0)] = 0


class AudioSettings(msgspec.Struct, frozen=True):
    """Limits on accepted media (enforced at upload, in the worker and by the Serve cluster)."""

    env_prefix: ClassVar[str] = "IAM_"
    env_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "max_duration_s": ("IAM_MAX_AUDIO_SECONDS",), "min_duration_s": ("IAM_MIN_AUDIO_SECONDS",)}

    max_duration_s: Positive = 4 * 3600.0
    min_duration_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class DiarizationSettings(msgspec.Struct, frozen=True):
    """Which diarizer runs when a transcription asks for speakers."""

    env_prefix: ClassVar[str] = "IAM_"
    env_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "backend": ("IAM_DIARIZER",), "device": ("IAM_DIARIZER_DEVICE",),
        "encoder": ("IAM_DIARIZER_ENCODER",), "pyannote_token": ("IAM_PYANNOTE_TOKEN", "HF_TOKEN")}

    backend: str = "embedded"
    #: pyannote.audio pipeline: a local folder or a Hugging Face hub id.
    pyannote_pipeline: str = "pyannote/speaker-diarization-community-1"
    pyannote_token: str | None = None
    device: str = "auto"
    #: Speaker encoder of the embedded diarizer: auto (campp where the diarizer runs on a GPU,
    #: resemblyzer on the CPU) | resemblyzer (fast on CPU) | campp (more accurate, slow on CPU).
    encoder: str = "auto"

    def diarizer_kwargs(self, backend: str | None = None, cache_dir: Path | None = None) -> dict:
        """Constructor arguments for ``make_diarizer(backend)``; ``cache_dir``: the models' cache
        (the embedded diarizer exports its segmentation model there once)."""
        if (backend or self.backend) == "pyannote":
            return dict(pipeline=self.pyannote_pipeline, token=self.pyannote_token, device=self.device)
        return dict(encoder=self.encoder, device=self.device, cache_dir=None if cache_dir is None else str(cache_dir))


class ServeSettings(msgspec.Struct, frozen=True):
    """The Ray Serve cluster: where callers find it, and how its ASR replicas batch."""

    env_prefix: ClassVar[str] = "IAM_SERVE_"

    #: ``http://host:8000`` of a running Serve application; empty runs the pipeline in process.
    address: str | None = None
    #: Longest wait of an ASR replica for a batch to fill.
    batch_wait_s: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.05
    #: ``file://`` URIs under this folder may be sent to the cluster instead of bytes.
    media_root: str | None = None
    #: Short recordings of concurrent requests share decoding windows (``serve/packing.py``);
    #: each still gets only its own words.
    pack_requests: bool = True
    #: Longest a caller waits for one transcription from the cluster.
    timeout_s: Positive = 3600.0


class DatabaseSettings(msgspec.Struct, frozen=True):
    """PostgreSQL, the source of truth and the job queue. ``DATABASE_URL`` is required by the
    commands that use it (API, worker, migrate, billing-sync)."""

    env_prefix: ClassVar[str] = "DATABASE_"

    url: str | None = None
    pool_min: Annotated[int, msgspec.Meta(ge=0)] = 1
    pool_max: Count = 10
    #: Connections kept apart for checking credentials. A request holds at most one of these and one
    #: of the main pool, never waiting for the one while holding the other of the same pool, so a
    #: burst of requests cannot all hold a connection while each waits for its second.
    auth_pool_max: Count = 4
    #: Longest a request waits for a pooled connection while the database is busy: past it, 503
    #: ``database_unavailable`` (load is shed, never queued without end).
    pool_timeout_s: Positive = 5.0
    #: The same while the pool holds no connection at all (the database is unreachable).
    down_timeout_s: Positive = 0.5
    #: Longest a new connection may take to open.
    connect_timeout_s: Positive = 2.0

    def require_url(self) -> str:
        """The URL, or a ConfigError naming ``DATABASE_URL``."""
        if not self.url:
            raise ConfigError("DATABASE_URL is not set (e.g. postgresql://user@host:5432/iam)")
        return self.url


class RedisSettings(msgspec.Struct, frozen=True):
    """Redis: rate-limit counters, caches and pub/sub fan-out (nothing that cannot be rebuilt)."""

    env_prefix: ClassVar[str] = "REDIS_"

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "iam:"
    #: Connections per API process (requests wait for one rather than fail).
    max_connections: Count = 256
    #: Longest any Redis call may take; past it, Redis counts as down for a few seconds.
    timeout_s: Positive = 1.0


class StorageSettings(msgspec.Struct, frozen=True):
    """Where uploaded audio lives: a local folder (default) or S3 / MinIO."""

    env_prefix: ClassVar[str] = "STORAGE_"
    env_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "bucket": ("AWS_S3_BUCKET",), "endpoint_url": ("AWS_ENDPOINT_URL",), "region": ("AWS_REGION",),
        "access_key_id": ("AWS_ACCESS_KEY_ID",), "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
        "max_upload_bytes": ("MAX_UPLOAD_BYTES",), "batch_s3_prefixes": ("IAM_BATCH_S3_PREFIXES",)}

    backend: str = "local"
    root: Path = Path.home() / ".local" / "share" / "iam-cluster" / "media"
    bucket: str = "iam-cluster-media"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    #: Largest accepted upload, for the API and the Serve cluster alike.
    max_upload_bytes: Count = 500 * 1024 * 1024
    #: S3 prefixes (``s3://bucket/prefix/``) the batch API may read recordings from, with this
    #: storage's endpoint and credentials; ``{user_id}`` stands for the caller's id. None: refused.
    batch_s3_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [p for p in self.batch_s3_prefixes if not p.startswith("s3://") or len(p) <= len("s3://")]
        if bad:
            raise ConfigError(f"IAM_BATCH_S3_PREFIXES: not an s3://bucket/prefix/: {bad[0]!r}")


class AuthSettings(msgspec.Struct, frozen=True):
    """JWT access tokens and rotating refresh tokens. ``JWT_SECRET_KEY`` is required by the API."""

    env_prefix: ClassVar[str] = ""

    jwt_secret_key: str | None = None
    jwt_algorithm: str = "HS256"
    access_token_expire_minutes: Count = 15
    refresh_token_expire_days: Count = 30

    def require_secret(self) -> str:
        """The signing secret, or a ConfigError when it is missing or too short to be safe."""
        secret = self.jwt_secret_key
        if not secret:
            raise ConfigError("JWT_SECRET_KEY is not set; generate one with: "
                              "python -c 'import secrets; print(secrets.token_urlsafe(48))'")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"JWT_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes long")
        return secret


class ApiSettings(msgspec.Struct, frozen=True):
    """The HTTP API: CORS origins and rate limits (requests per minute, in Redis)."""

    env_prefix: ClassVar[str] = ""

    cors_origins: tuple[str, ...] = ()
    rate_limit_per_user: Count = 120
    rate_limit_per_ip: Count = 300
    #: Tighter budget for login/register attempts per IP.
    auth_rate_limit_per_ip: Count = 20
    #: An upload whose client sends nothing for this long is cut off (408).
    upload_read_timeout_s: Positive = 30.0
    #: Uploads one account may stream at the same time.
    max_concurrent_uploads: Count = 4
    #: Failed sign-ins of one account before each next try must wait (1, 2, 4... s, up to 15 min).
    login_free_failures: Count = 5
    #: Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or CIDRs); none by default.
    trusted_proxies: tuple[str, ...] = ()
    #: Longest audio the synchronous OpenAI-compatible endpoint takes; longer goes to the job API (413).
    sync_max_audio_seconds: Positive = 1800.0


class WorkerSettings(msgspec.Struct, frozen=True):
    """The job worker: lease length and retries."""

    env_prefix: ClassVar[str] = "WORKER_"

    lease_seconds: Positive = 60.0
    heartbeat_seconds: Positive = 15.0
    max_attempts: Count = 3
    retry_base_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0


class WebhookSettings(msgspec.Struct, frozen=True):
    """Webhook delivery: timeouts, backoff, and which targets are allowed."""

    env_prefix: ClassVar[str] = "WEBHOOK_"

    #: Allow loopback, private and link-local targets (tests; deployments that are all internal).
    allow_private: bool = False
    timeout_s: Positive = 10.0
    #: Retries wait base * 2**(attempt-1), at most max, for retry_hours after the event.
    base_delay_s: Positive = 5.0
    max_delay_s: Positive = 3600.0
    retry_hours: Positive = 24.0
    #: Seconds a deliverer waits for a wake-up before looking for due retries anyway.
    poll_s: Positive = 1.0


class BillingSettings(msgspec.Struct, frozen=True):
    """Stripe keys and prices; without a secret key, metering and quotas still work."""

    env_prefix: ClassVar[str] = "STRIPE_"

    secret_key: str | None = None
    webhook_secret: str | None = None
    #: Override of the Stripe API base URL (tests point it at a local fake server).
    api_base: str | None = None
    #: Stripe price id per plan id (``STRIPE_PRICE_PRO`` -> ``price["pro"]``).
    price: dict[str, str] = {}
    #: Billing meter event name that usage is reported under.
    meter_event_name: str = "transcription_minutes"
    success_url: str = "http://127.0.0.1:8080/billing/success"
    cancel_url: str = "http://127.0.0.1:8080/billing/cancel"


class ObservabilitySettings(msgspec.Struct, frozen=True):
    """Logs, metrics and error reporting for the API, the worker and the Serve replicas."""

    env_prefix: ClassVar[str] = ""
    env_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "environment": ("IAM_ENVIRONMENT", "SENTRY_ENVIRONMENT"), "release": ("IAM_RELEASE", "SENTRY_RELEASE")}

    #: ``json`` (one object per line: production), ``console`` (readable: development), or
    #: ``auto``: console on a terminal, JSON otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL",
                       "debug", "info", "warning", "error", "critical"] = "INFO"
    #: One structured line per HTTP request (method, route, status, duration; never the query string).
    access_log: bool = True
    #: Prometheus metrics: the API's ``/metrics`` route and the worker's metrics server.
    metrics_enabled: bool = True
    #: Port of the worker's ``/metrics`` and ``/healthz`` server; 0 turns it off.
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9400
    sentry_dsn: str | None = None
    #: ``development``, ``staging``, ``production``...: Sentry's environment.
    environment: str = "development"
    #: Sentry release; default ``iam-cluster@<package version>``.
    release: str | None = None
    sentry_traces_sample_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0


class InsightsSettings(msgspec.Struct, frozen=True):
    """Meeting insights computed after each transcription; the chat endpoint is optional."""

    env_prefix: ClassVar[str] = "IAM_INSIGHTS_"
    env_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "enabled": ("IAM_INSIGHTS",), "llm_base_url": ("IAM_LLM_BASE_URL",), "llm_model": ("IAM_LLM_MODEL",),
        "llm_api_key": ("IAM_LLM_API_KEY",), "llm_timeout_seconds": ("IAM_LLM_TIMEOUT_SECONDS",),
        "llm_max_input_chars": ("IAM_LLM_MAX_INPUT_CHARS",)}

    enabled: bool = True
    summary_sentences: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    keywords: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    timeline_seconds: Positive = 60.0
    #: OpenAI-compatible API root (``http://vllm:8000/v1``); unset keeps insights offline.
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout_seconds: Positive = 30.0
    #: Longest transcript sent to the endpoint, in characters (longer ones are cut).
    llm_max_input_chars: Count = 48_000

    def __post_init__(self) -> None:
        if self.llm_base_url and not self.llm_model:
            raise ConfigError("IAM_LLM_MODEL must name the model when IAM_LLM_BASE_URL is set")


class WebSettings(msgspec.Struct, frozen=True):
    """The web app served by the API process: its cookie session."""

    env_prefix: ClassVar[str] = "WEB_"

    #: Serve the pages at ``/`` (the API works without them).
    enabled: bool = True
    #: Mark the session and CSRF cookies ``Secure`` (HTTPS only). Turn off only in development over
    #: plain HTTP on another host than localhost (browsers accept Secure cookies from localhost).
    cookie_secure: bool = True
    #: A sign-in lasts this many days.
    session_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 14


class Settings(msgspec.Struct, frozen=True):
    models: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    audio: AudioSettings = AudioSettings()
    diarization: DiarizationSettings = DiarizationSettings()
    serve: ServeSettings = ServeSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    storage: StorageSettings = StorageSettings()
    auth: AuthSettings = AuthSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    webhooks: WebhookSettings = WebhookSettings()
    billing: BillingSettings = BillingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    insights: InsightsSettings = InsightsSettings()
    web: WebSettings = WebSettings()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default).

    Raises:
        ConfigError: a variable holds a value of the wrong kind or out of range; the message names it.
    """
    env = os.environ if env is None else env
    return Settings(**{f.name: from_env(f.type, env) for f in msgspec.structs.fields(Settings)})


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()
