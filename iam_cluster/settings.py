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


class Settings(msgspec.Struct, frozen=True):
    models: ModelSettings = ModelSettings()
    audio: AudioSettings = AudioSettings()
    diarization: DiarizationSettings = DiarizationSettings()


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
    )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()
