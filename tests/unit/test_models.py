"""Model resolution without network: embedded models, folders, cache, device and compute type."""

from __future__ import annotations

import pytest

from iam_cluster.errors import ConfigError, ModelNotFoundError
from iam_cluster.pipeline.models import embedded_base, resolve_compute_type, resolve_device, resolve_model


def test_tiny_en_is_embedded(tmp_path):
    ref = resolve_model("tiny.en", tmp_path)
    assert ref.name == "tiny.en" and (ref.path / "model.bin").is_file()


def test_base_is_assembled_once_and_checked_by_size(tmp_path):
    path = embedded_base(tmp_path)
    model_bin = path / "model.bin"
    size = model_bin.stat().st_size
    assert size > 100_000_000 and (path / "tokenizer.json").is_file()
    mtime = model_bin.stat().st_mtime_ns
    assert embedded_base(tmp_path) == path and model_bin.stat().st_mtime_ns == mtime  # reused
    with model_bin.open("r+b") as f:  # a short (interrupted) copy is rebuilt
        f.truncate(1000)
    assert embedded_base(tmp_path) == path and model_bin.stat().st_size == size
    assert not [p for p in path.iterdir() if p.name.startswith(".model.bin")]


def test_folders_and_unknown_names(tmp_path):
    assert resolve_model(str(resolve_model("tiny.en", tmp_path).path), tmp_path).name == "model"
    with pytest.raises(ModelNotFoundError, match="no model.bin"):
        resolve_model(str(tmp_path), tmp_path)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("./nowhere/model", tmp_path)
    with pytest.raises(ModelNotFoundError, match="IAM_ALLOW_DOWNLOAD"):
        resolve_model("large-v3", tmp_path)


def test_device_and_compute_type(monkeypatch):
    import ctranslate2

    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_compute_type("auto", "cpu") == "int8"
    assert resolve_compute_type("auto", "cuda") == "float16"
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    with pytest.raises(ConfigError):
        resolve_compute_type("int3", "cpu")
