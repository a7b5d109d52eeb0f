"""LocalStorage and key validation, without any service: atomic writes, safe keys, backend choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from iam_cluster.errors import ConfigError, IAMError
from iam_cluster.settings import StorageSettings
from iam_cluster.storage import (
    LocalStorage,
    ObjectNotFound,
    Storage,
    StorageError,
    UploadTooLarge,
    make_storage,
    validate_key,
)
from iam_cluster.storage.local import TEMP_PREFIX

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_backends_implement_the_whole_protocol(backend):
    """Every method of the Storage protocol exists on each backend with the same parameters."""
    import inspect

    from iam_cluster.storage.s3 import S3Storage

    cls = LocalStorage if backend == "local" else S3Storage
    for name, member in vars(Storage).items():
        if name.startswith("_") or not callable(member):
            continue
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}"
        expected = list(inspect.signature(member).parameters)
        assert list(inspect.signature(getattr(cls, name)).parameters) == expected, name


def test_round_trip_of_real_audio(storage):
    source = DATA / "jfk.flac"
    data = source.read_bytes()
    stored = storage.put_stream("u/7/jfk.flac", (data[i : i + 50_000] for i in range(0, len(data), 50_000)))
    assert stored.size == len(data) == storage.size("u/7/jfk.flac")
    assert stored.url == (storage.root / "u/7/jfk.flac").as_uri() and stored.url.startswith("file://")
    with storage.open("u/7/jfk.flac") as f:
        assert f.read() == data
    with storage.local_path("u/7/jfk.flac") as path:
        from iam_cluster.pipeline.decode import decode_audio

        assert path == storage.root / "u/7/jfk.flac"
        assert 10.5 < decode_audio(path).duration < 11.5
    assert path.exists()  # the object itself, not a copy


def test_writes_go_to_a_temp_file_beside_the_target_then_are_renamed(storage):
    seen = []

    def chunks():
        yield b"abc"
        seen.append(files(storage.root))
        yield b"def"

    storage.put_stream("d/e/f.bin", chunks())
    (during,) = seen
    assert len(during) == 1 and Path(during[0]).parent == Path("d/e")
    assert Path(during[0]).name.startswith(TEMP_PREFIX)
    assert files(storage.root) == ["d/e/f.bin"]


def test_overflow_removes_the_temp_file(storage):
    with pytest.raises(UploadTooLarge) as info:
        storage.put_stream("x.bin", iter([b"1234", b"5678", b"9"]), max_bytes=8)
    assert isinstance(info.value, StorageError) and isinstance(info.value, IAMError)
    assert info.value.code == "too_large"
    assert files(storage.root) == []


def test_exactly_max_bytes_is_accepted(storage):
    assert storage.put_stream("x.bin", [b"1234", b"5678"], max_bytes=8).size == 8


def test_exists_delete_and_missing(storage):
    storage.delete("a.wav")
    assert not storage.exists("a.wav")
    storage.put_stream("a.wav", [b"x"])
    assert storage.exists("a.wav")
    storage.delete("a.wav")
    storage.delete("a.wav")
    assert not storage.exists("a.wav")
    with pytest.raises(ObjectNotFound):
        storage.open("a.wav")
    storage.put_stream("dir/a.wav", [b"x"])
    assert not storage.exists("dir")  # a folder is not an object
    with pytest.raises(ObjectNotFound):
        storage.open("dir")


@pytest.mark.parametrize("key", ["a", "a.wav", "users/1/2024-01-01_x.flac", "A-b_c.9/x", ".hidden", "x" * 512])
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "../up", "a/../b", "a/..", "./a", "a//b", "a/", "a\\b", "a b", "ü", "a\nb", "a:b", "x" * 513, None, 3],
)
def test_invalid_keys(key, storage, tmp_path):
    with pytest.raises(ValueError):
        validate_key(key)
    with pytest.raises(ValueError):
        storage.put_stream(key, [b"evil"])
    assert files(tmp_path) == []


def test_make_storage_local_and_unknown(tmp_path):
    local = make_storage(StorageSettings(backend="local", root=tmp_path / "m"))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "m").resolve()
    with pytest.raises(ConfigError, match="STORAGE_BACKEND"):
        make_storage(StorageSettings(backend="ftp"))
