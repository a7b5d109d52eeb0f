"""Settings: one frozen struct per concern, read once from the environment by ``get_settings()``."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from iam_cluster.errors import ConfigError


class ModelSettings(msgspec.Struct, frozen=True):
    """Which Whisper model runs, where, and where assembled model files are cached."""

    #: ``tiny.en`` (embedded default), ``base`` (embedded multilingual), a CTranslate2 folder,
    #: or a faster-whisper name (``large-v3``, ``turbo``, ``distil-large-v3``...).
    name: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    #: CTranslate2 intra-op threads; 0 lets it choose (all cores).
    cpu_threads: int = 0
    cache_dir: Path = Path.home() / ".cache" / "iam-cluster"
    #: Let faster-whisper fetch named models from the Hugging Face Hub when not cached.
    allow_download: bool = False


class AudioSettings(msgspec.Struct, frozen=True):
    """Limits on accepted media."""

    max_duration_s: float = 4 * 3600.0
    min_duration_s: float = 0.0


class DiarizationSettings(msgspec.Struct, frozen=True):
    """Which diarizer runs when a transcription asks for speakers."""

    backend: str = "embedded"
    #: pyannote.audio pipeline: a local folder or a Hugging Face hub id.
    pyannote_pipeline: str = "pyannote/speaker-diarization-community-1"
    pyannote_token: str | None = None
    device: str = "auto"

    def diarizer_kwargs(self, backend: str | None = None) -> dict:
        """Constructor arguments for ``make_diarizer(backend)``."""
        if (backend or self.backend) == "pyannote":
            return dict(pipeline=self.pyannote_pipeline, token=self.pyannote_token, device=self.device)
        return {}


class DatabaseSettings(msgspec.Struct, frozen=True):
    """PostgreSQL, the source of truth and the job queue."""

    url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    pool_min: int = 1
    pool_max: int = 10


class RedisSettings(msgspec.Struct, frozen=True):
    """Redis: rate-limit counters, caches and pub/sub fan-out (nothing that cannot be rebuilt)."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "iam:"


class StorageSettings(msgspec.Struct, frozen=True):
    """Where uploaded audio lives: a local folder (default) or S3 / MinIO."""

    backend: str = "local"
    root: Path = Path.home() / ".local" / "share" / "iam-cluster" / "media"
    bucket: str = "iam-cluster-media"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    max_upload_bytes: int = 500 * 1024 * 1024


class AuthSettings(msgspec.Struct, frozen=True):
    """JWT access tokens and rotating refresh tokens."""

    #: Required outside development; the default only serves local runs and tests.
    jwt_secret_key: str = "dev-only-insecure-secret-change-me"
    jwt_algorithm: str = "HS256"
    access_token_expire_minutes: int = 15
    refresh_token_expire_days: int = 30


class ApiSettings(msgspec.Struct, frozen=True):
    """The HTTP API: CORS origins and rate limits (requests per minute, in Redis)."""

    cors_origins: tuple[str, ...] = ()
    rate_limit_per_user: int = 120
    rate_limit_per_ip: int = 300
    #: Tighter budget for login/register attempts per IP.
    auth_rate_limit_per_ip: int = 20


class WorkerSettings(msgspec.Struct, frozen=True):
    """The job worker: lease length, retries, and where the pipeline runs."""

    lease_seconds: float = 60.0
    heartbeat_seconds: float = 15.0
    max_attempts: int = 3
    retry_base_seconds: float = 5.0
    #: Address of a Ray Serve application; empty runs the pipeline in process.
    serve_address: str | None = None


class BillingSettings(msgspec.Struct, frozen=True):
    """Stripe keys and prices; without a secret key, metering and quotas still work."""

    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    #: Override of the Stripe API base URL (tests point it at a local fake server).
    stripe_api_base: str | None = None
    price_pro: str | None = None
    price_enterprise: str | None = None
    #: Billing meter event name that usage is reported under.
    meter_event_name: str = "transcription_minutes"
    success_url: str = "http://127.0.0.1:8080/billing/success"
    cancel_url: str = "http://127.0.0.1:8080/billing/cancel"


class ObservabilitySettings(msgspec.Struct, frozen=True):
    """Logs, metrics and error reporting for the API, the worker and the Serve replicas."""

    #: ``json`` (one object per line: production), ``console`` (readable: development), or ``auto``:
    #: console on a terminal, JSON otherwise.
    log_format: str = "auto"
    log_level: str = "INFO"
    #: One structured line per HTTP request (method, route, status, duration; never the query string).
    access_log: bool = True
    #: Prometheus metrics: the API's ``/metrics`` route and the worker's metrics server.
    metrics_enabled: bool = True
    #: Port of the worker's ``/metrics`` and ``/healthz`` server; 0 turns it off.
    metrics_port: int = 9400
    sentry_dsn: str | None = None
    #: ``development``, ``staging``, ``production``...: Sentry's environment, and the log default.
    environment: str = "development"
    #: Sentry release; default ``iam-cluster@<package version>``.
    release: str | None = None
    sentry_traces_sample_rate: float = 0.0


#: Accepted ``LOG_FORMAT`` values.
LOG_FORMATS = ("auto", "json", "console")


class Settings(msgspec.Struct, frozen=True):
    models: ModelSettings = ModelSettings()
    audio: AudioSettings = AudioSettings()
    diarization: DiarizationSettings = DiarizationSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    storage: StorageSettings = StorageSettings()
    auth: AuthSettings = AuthSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    billing: BillingSettings = BillingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()


def _get(env: Mapping[str, str], name: str, kind: type, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        if kind is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default).

    Raises:
        ConfigError: a variable is set to a value of the wrong kind; the message names it.
    """
    env = os.environ if env is None else env
    m = ModelSettings()
    a = AudioSettings()
    d = DiarizationSettings()
    db, r, st, au = DatabaseSettings(), RedisSettings(), StorageSettings(), AuthSettings()
    ap, wk, bi, ob = ApiSettings(), WorkerSettings(), BillingSettings(), ObservabilitySettings()
    log_format = _get(env, "LOG_FORMAT", str, ob.log_format).lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    origins = _get(env, "CORS_ORIGINS", str, "")
    return Settings(
        models=ModelSettings(
            name=_get(env, "IAM_MODEL", str, m.name),
            device=_get(env, "IAM_DEVICE", str, m.device),
            compute_type=_get(env, "IAM_COMPUTE_TYPE", str, m.compute_type),
            cpu_threads=_get(env, "IAM_CPU_THREADS", int, m.cpu_threads),
            cache_dir=_get(env, "IAM_CACHE_DIR", Path, m.cache_dir),
            allow_download=_get(env, "IAM_ALLOW_DOWNLOAD", bool, m.allow_download),
        ),
        audio=AudioSettings(
            max_duration_s=_get(env, "IAM_MAX_AUDIO_SECONDS", float, a.max_duration_s),
            min_duration_s=_get(env, "IAM_MIN_AUDIO_SECONDS", float, a.min_duration_s),
        ),
        diarization=DiarizationSettings(
            backend=_get(env, "IAM_DIARIZER", str, d.backend),
            pyannote_pipeline=_get(env, "IAM_PYANNOTE_PIPELINE", str, d.pyannote_pipeline),
            pyannote_token=_get(env, "IAM_PYANNOTE_TOKEN", str, None) or _get(env, "HF_TOKEN", str, None),
            device=_get(env, "IAM_DIARIZER_DEVICE", str, d.device),
        ),
        database=DatabaseSettings(
            url=_get(env, "DATABASE_URL", str, db.url),
            pool_min=_get(env, "DATABASE_POOL_MIN", int, db.pool_min),
            pool_max=_get(env, "DATABASE_POOL_MAX", int, db.pool_max),
        ),
        redis=RedisSettings(
            url=_get(env, "REDIS_URL", str, r.url),
            key_prefix=_get(env, "REDIS_KEY_PREFIX", str, r.key_prefix),
        ),
        storage=StorageSettings(
            backend=_get(env, "STORAGE_BACKEND", str, st.backend),
            root=_get(env, "STORAGE_ROOT", Path, st.root),
            bucket=_get(env, "AWS_S3_BUCKET", str, st.bucket),
            endpoint_url=_get(env, "AWS_ENDPOINT_URL", str, st.endpoint_url),
            region=_get(env, "AWS_REGION", str, st.region),
            access_key_id=_get(env, "AWS_ACCESS_KEY_ID", str, st.access_key_id),
            secret_access_key=_get(env, "AWS_SECRET_ACCESS_KEY", str, st.secret_access_key),
            max_upload_bytes=_get(env, "MAX_UPLOAD_BYTES", int, st.max_upload_bytes),
        ),
        auth=AuthSettings(
            jwt_secret_key=_get(env, "JWT_SECRET_KEY", str, au.jwt_secret_key),
            jwt_algorithm=_get(env, "JWT_ALGORITHM", str, au.jwt_algorithm),
            access_token_expire_minutes=_get(env, "ACCESS_TOKEN_EXPIRE_MINUTES", int, au.access_token_expire_minutes),
            refresh_token_expire_days=_get(env, "REFRESH_TOKEN_EXPIRE_DAYS", int, au.refresh_token_expire_days),
        ),
        api=ApiSettings(
            cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            rate_limit_per_user=_get(env, "RATE_LIMIT_PER_USER", int, ap.rate_limit_per_user),
            rate_limit_per_ip=_get(env, "RATE_LIMIT_PER_IP", int, ap.rate_limit_per_ip),
            auth_rate_limit_per_ip=_get(env, "AUTH_RATE_LIMIT_PER_IP", int, ap.auth_rate_limit_per_ip),
        ),
        worker=WorkerSettings(
            lease_seconds=_get(env, "WORKER_LEASE_SECONDS", float, wk.lease_seconds),
            heartbeat_seconds=_get(env, "WORKER_HEARTBEAT_SECONDS", float, wk.heartbeat_seconds),
            max_attempts=_get(env, "WORKER_MAX_ATTEMPTS", int, wk.max_attempts),
            retry_base_seconds=_get(env, "WORKER_RETRY_BASE_SECONDS", float, wk.retry_base_seconds),
            serve_address=_get(env, "IAM_SERVE_ADDRESS", str, None),
        ),
        billing=BillingSettings(
            stripe_secret_key=_get(env, "STRIPE_SECRET_KEY", str, None),
            stripe_webhook_secret=_get(env, "STRIPE_WEBHOOK_SECRET", str, None),
            stripe_api_base=_get(env, "STRIPE_API_BASE", str, None),
            price_pro=_get(env, "STRIPE_PRICE_PRO", str, None),
            price_enterprise=_get(env, "STRIPE_PRICE_ENTERPRISE", str, None),
            meter_event_name=_get(env, "STRIPE_METER_EVENT_NAME", str, bi.meter_event_name),
            success_url=_get(env, "STRIPE_SUCCESS_URL", str, bi.success_url),
            cancel_url=_get(env, "STRIPE_CANCEL_URL", str, bi.cancel_url),
        ),
        observability=ObservabilitySettings(
            log_format=log_format,
            log_level=_get(env, "LOG_LEVEL", str, ob.log_level).upper(),
            access_log=_get(env, "ACCESS_LOG", bool, ob.access_log),
            metrics_enabled=_get(env, "METRICS_ENABLED", bool, ob.metrics_enabled),
            metrics_port=_get(env, "METRICS_PORT", int, ob.metrics_port),
            sentry_dsn=_get(env, "SENTRY_DSN", str, None),
            environment=_get(env, "IAM_ENVIRONMENT", str, None) or _get(env, "SENTRY_ENVIRONMENT", str, ob.environment),
            release=_get(env, "IAM_RELEASE", str, None) or _get(env, "SENTRY_RELEASE", str, None),
            sentry_traces_sample_rate=_get(env, "SENTRY_TRACES_SAMPLE_RATE", float, ob.sentry_traces_sample_rate),
        ),
    )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()
