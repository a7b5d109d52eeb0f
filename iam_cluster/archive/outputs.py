"""Where an archive job's results go: a local folder or an S3 prefix, mirroring the input's tree."""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from iam_cluster.archive.sources import s3_client, split_s3
from iam_cluster.pipeline.export import render
from iam_cluster.pipeline.types import Transcript


class Sink(msgspec.Struct, frozen=True):
    """A local folder or ``s3://bucket/prefix``; every write replaces the whole object atomically."""

    location: str
    endpoint_url: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def _s3(self) -> tuple[object, str, str]:
        bucket, prefix = split_s3(self.location)
        return s3_client(self.endpoint_url), bucket, prefix.rstrip("/")

    def write(self, key: str, data: bytes) -> None:
        """Stores ``data`` under ``key`` (a safe relative POSIX path): whole or not at all."""
        if self.is_s3:
            client, bucket, prefix = self._s3()
            client.put_object(Bucket=bucket, Key=posixpath.join(prefix, key) if prefix else key, Body=data)
            return
        path = Path(self.location, *key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        if self.is_s3:
            client, bucket, prefix = self._s3()
            try:
                return client.get_object(Bucket=bucket, Key=posixpath.join(prefix, key) if prefix else key)[
                    "Body"].read()
            except client.exceptions.NoSuchKey:
                return None
        path = Path(self.location, *key.split("/"))
        return path.read_bytes() if path.is_file() else None

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` (a folder, ``a/b/``), relative to the sink."""
        if self.is_s3:
            client, bucket, root = self._s3()
            full = posixpath.join(root, prefix) if root else prefix
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=full)
            return [o["Key"][len(root) + 1 if root else 0:] for p in pages for o in p.get("Contents", [])]
        folder = Path(self.location, *prefix.strip("/").split("/"))
        return sorted(f"{prefix.rstrip('/')}/{p.name}" for p in folder.glob("*") if p.is_file()
                      and not p.name.endswith(".part")) if folder.is_dir() else []

    def delete(self, key: str) -> None:
        if self.is_s3:
            client, bucket, prefix = self._s3()
            client.delete_object(Bucket=bucket, Key=posixpath.join(prefix, key) if prefix else key)
            return
        Path(self.location, *key.split("/")).unlink(missing_ok=True)

    def local_file(self, key: str) -> Path | None:
        """The local path of ``key`` (None on S3)."""
        return None if self.is_s3 else Path(self.location, *key.split("/"))

    def url(self, key: str) -> str:
        return posixpath.join(self.location, key) if self.is_s3 else str(Path(self.location, *key.split("/")))


def output_stems(keys: Sequence[str]) -> dict[str, str]:
    """Each input key's output stem: the key without its extension, unless two inputs would share it
    (``a.wav`` and ``a.mp3``), then the whole key. Depends only on the listing, so reruns agree."""
    stems = {k: posixpath.splitext(k)[0] or k for k in keys}
    counts: dict[str, int] = {}
    for s in stems.values():
        counts[s] = counts.get(s, 0) + 1
    reserved = {"manifest", "summary"}
    return {k: (s if counts[s] == 1 and s not in reserved else k) for k, s in stems.items()}


def write_outputs(sink: Sink, stem: str, transcript: Transcript, formats: Sequence[str]) -> list[str]:
    """Writes ``STEM.FMT`` for each format; returns the keys written."""
    keys = []
    for fmt in formats:
        key = f"{stem}.{fmt}"
        sink.write(key, render(transcript, fmt).encode("utf-8"))
        keys.append(key)
    return keys
