"""One behaviour suite for every storage backend: a local folder and S3 (moto server)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from iam_cluster.settings import StorageSettings
from iam_cluster.storage import LocalStorage, ObjectNotFound, Storage, UploadTooLarge, make_storage

DATA = Path(__file__).parents[1] / "data"
MIB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "media")
    return request.getfixturevalue("s3_storage")


def chunks_of(path: Path, size: int = 64 * 1024):
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def pseudo_random(total: int, chunk: int = MIB):
    """``total`` bytes in ``chunk``-sized pieces, generated lazily."""
    seed = b"iam"
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        seed = hashlib.sha256(seed).digest()
        yield (seed * (n // len(seed) + 1))[:n]


def leftovers(storage) -> list[str]:
    """Everything the backend holds: files under the root, or S3 objects and pending uploads."""
    if isinstance(storage, LocalStorage):
        if not storage.root.exists():
            return []
        return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())
    objects = storage.client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
    return sorted([o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads])


def test_round_trip_of_real_audio_streamed_in_chunks(storage):
    source = DATA / "jfk.flac"
    stored = storage.put_stream("users/1/jfk.flac", chunks_of(source), max_bytes=10 * MIB)
    assert stored.key == "users/1/jfk.flac"
    assert stored.size == source.stat().st_size == storage.size("users/1/jfk.flac")
    assert stored.url == storage.url("users/1/jfk.flac")
    assert stored.url.startswith("file://" if isinstance(storage, LocalStorage) else "s3://")
    with storage.open("users/1/jfk.flac") as f:
        assert f.read() == source.read_bytes()
    assert leftovers(storage) == ["users/1/jfk.flac"]


def test_large_upload_spans_several_parts(storage):
    total = 20 * MIB + 123  # three multipart parts of 8 MiB on S3
    stored = storage.put_stream("big.bin", pseudo_random(total), max_bytes=total)
    assert stored.size == total == storage.size("big.bin")
    with storage.open("big.bin") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest == hashlib.sha256(b"".join(pseudo_random(total))).hexdigest()
    assert leftovers(storage) == ["big.bin"]


def test_put_replaces_an_existing_object(storage):
    storage.put_stream("a/b.txt", [b"first version"])
    storage.put_stream("a/b.txt", [b"two", b"", b"!"])
    assert storage.size("a/b.txt") == 4
    with storage.open("a/b.txt") as f:
        assert f.read() == b"two!"


def test_empty_upload(storage):
    assert storage.put_stream("empty", []).size == 0
    assert storage.exists("empty") and storage.size("empty") == 0


def test_exists_and_delete_are_idempotent(storage):
    assert not storage.exists("x/y.wav")
    storage.delete("x/y.wav")
    storage.put_stream("x/y.wav", [b"abc"])
    assert storage.exists("x/y.wav")
    storage.delete("x/y.wav")
    storage.delete("x/y.wav")
    assert not storage.exists("x/y.wav")


def test_missing_objects_raise_not_found(storage):
    with pytest.raises(ObjectNotFound) as info:
        storage.open("nope.wav")
    assert info.value.code == "not_found"
    with pytest.raises(ObjectNotFound):
        storage.size("nope.wav")
    with pytest.raises(ObjectNotFound):
        with storage.local_path("nope.wav"):
            pass


def test_local_path_is_decodable_and_temporary_copies_are_removed(storage):
    from iam_cluster.pipeline.decode import decode_audio

    storage.put_stream("m/jfk.flac", chunks_of(DATA / "jfk.flac"))
    with storage.local_path("m/jfk.flac") as path:
        assert path.is_file() and path.suffix == ".flac"
        audio = decode_audio(path)
        assert 10.5 < audio.duration < 11.5  # the JFK clip is 11 s
    if isinstance(storage, LocalStorage):
        assert path == storage.path("m/jfk.flac") and path.exists()
    else:
        assert not path.exists()
    assert storage.exists("m/jfk.flac")


@pytest.mark.parametrize("total", [3 * MIB, 20 * MIB], ids=["single-part", "multipart"])
def test_overflow_raises_and_leaves_nothing(storage, total):
    storage.put_stream("keep.txt", [b"unrelated"])
    with pytest.raises(UploadTooLarge) as info:
        storage.put_stream("too/big.bin", pseudo_random(total), max_bytes=total - 1)
    assert info.value.code == "too_large"
    assert not storage.exists("too/big.bin")
    assert leftovers(storage) == ["keep.txt"]


def test_overflow_keeps_the_previous_object(storage):
    storage.put_stream("same.bin", [b"old"])
    with pytest.raises(UploadTooLarge):
        storage.put_stream("same.bin", [b"12345", b"67890"], max_bytes=8)
    with storage.open("same.bin") as f:
        assert f.read() == b"old"


def test_failing_source_leaves_nothing(storage):
    def broken():
        yield from pseudo_random(9 * MIB)
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        storage.put_stream("broken.bin", broken())
    assert leftovers(storage) == []


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a/./b", "a//b", "a/", ".", "..", "a\\b", "a b",
     "é.wav", "a\x00b", "x" * 513],
)
def test_bad_keys_are_rejected(storage, key):
    with pytest.raises(ValueError):
        storage.put_stream(key, [b"data"])
    for op in (storage.open, storage.exists, storage.delete, storage.url, storage.size):
        with pytest.raises(ValueError):
            op(key)
    assert leftovers(storage) == []


def test_make_storage_picks_the_backend(tmp_path, moto_endpoint):
    local = make_storage(StorageSettings(backend="local", root=tmp_path / "m"))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "m").resolve()

    from iam_cluster.storage.s3 import S3Storage

    s3 = make_storage(
        StorageSettings(
            backend="s3", bucket="made-by-settings", endpoint_url=moto_endpoint, region="us-east-1",
            access_key_id="testing", secret_access_key="testing",
        )
    )
    assert isinstance(s3, S3Storage)
    s3.put_stream("k", [b"v"])  # the bucket was created by make_storage
    assert s3.url("k") == "s3://made-by-settings/k" and s3.exists("k")
