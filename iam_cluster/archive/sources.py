"""Inputs of an archive job: a folder, a zip or tar archive, an S3 prefix, or a manifest of paths/URIs.

``list_items`` names every recording once (key = its path inside the input, which the outputs
mirror; fingerprint = what tells a rerun whether it changed), refusing unsafe member names and
archives over their limits before anything is decompressed. ``read_items`` then hands each item
over as a path or a spooled file, one member at a time, never holding an archive in memory.
"""

from __future__ import annotations

import csv
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

import msgspec

from iam_cluster.archive.limits import (
    ArchiveError,
    ArchiveLimits,
    Budget,
    MemberTooLarge,
    copy_limited,
    is_litter,
    safe_name,
)

Kind = Literal["folder", "zip", "tar", "s3", "manifest"]
#: Members up to this size stay in memory while decoded; larger ones spill to a temporary file.
SPOOL_BYTES = 16 * 1024 * 1024
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class Item(msgspec.Struct, frozen=True):
    """One input recording.

    Attributes:
        key: Its path inside the input (POSIX, safe); outputs mirror it.
        ref: What reads it: an absolute path, a member name, an S3 key or URI.
        size: Bytes (uncompressed).
        fingerprint: Changes when the content does (CRC-32 for zip members, ETag for S3,
            size and mtime otherwise); a rerun redoes an item whose fingerprint changed.
        index: Position in a tar stream (tar members are found by position).
    """

    key: str
    ref: str
    size: int
    fingerprint: str
    index: int = -1


class Source(msgspec.Struct, frozen=True):
    """Where the recordings are; cheap to send to Ray tasks (it is reopened where it is read)."""

    kind: Kind
    location: str
    limits: ArchiveLimits = ArchiveLimits()
    #: S3 endpoint (MinIO, moto); None: AWS or ``AWS_ENDPOINT_URL``.
    endpoint_url: str | None = None


DEFAULT_LIMITS = ArchiveLimits()


def open_source(spec: str, limits: ArchiveLimits = DEFAULT_LIMITS, endpoint_url: str | None = None) -> Source:
    """The source ``spec`` names: ``s3://bucket/prefix``, a folder, an archive or a ``.jsonl``/``.csv`` manifest.

    Raises:
        ArchiveError: nothing there, or not a kind of input this knows.
    """
    if spec.startswith("s3://"):
        return Source("s3", spec, limits, endpoint_url)
    path = Path(spec).resolve()
    name = path.name.lower()
    if path.is_dir():
        kind: Kind = "folder"
    elif not path.is_file():
        raise ArchiveError(f"{spec}: no such file or folder")
    elif name.endswith((".jsonl", ".csv")):
        kind = "manifest"
    elif zipfile.is_zipfile(path):
        kind = "zip"
    elif name.endswith(_TAR_SUFFIXES) or _is_tar(path):
        kind = "tar"
    else:
        raise ArchiveError(f"{spec}: not a folder, zip or tar archive, S3 prefix or .jsonl/.csv manifest")
    return Source(kind, str(path), limits, endpoint_url)


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


# --- listing -------------------------------------------------------------------------------------

def list_items(source: Source, client=None) -> list[Item]:
    """Every recording of the source, in a stable order (S3 through ``client`` when given).

    Raises:
        UnsafeMember: a member name would escape the output folder (the whole archive is refused).
        ArchiveTooLarge: too many members, or more bytes than the limits allow (before decompressing).
        ArchiveError: the archive is damaged or cannot be read.
    """
    budget = Budget(source.limits, source.location)
    try:
        items = _list_s3(source, budget, client) if source.kind == "s3" else _LISTERS[source.kind](source, budget)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{source.location}: cannot read the archive ({exc})") from exc
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ArchiveError(f"{source.location}: {dup!r} appears twice")
    return items


def _list_folder(source: Source, budget: Budget) -> list[Item]:
    root = Path(source.location)
    items = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file() or is_litter(rel):
            continue
        st = path.stat()
        budget.add(rel, st.st_size)
        items.append(Item(rel, str(path), st.st_size, f"size:{st.st_size}:mtime:{st.st_mtime_ns}"))
    return items


def _list_zip(source: Source, budget: Budget) -> list[Item]:
    items = []
    with zipfile.ZipFile(source.location) as zf:
        for info in zf.infolist():  # the central directory only: nothing is decompressed here
            if info.is_dir():
                continue
            key = safe_name(info.filename)  # refuses zip-slip names before any other check
            if is_litter(key):
                continue
            budget.add(key, info.file_size)
            items.append(Item(key, info.filename, info.file_size, f"crc32:{info.CRC:08x}:size:{info.file_size}"))
    return sorted(items, key=lambda i: i.key)


def _list_tar(source: Source, budget: Budget) -> list[Item]:
    items = []
    # Streaming mode: headers are read in order, a member's data is skipped, never kept.
    with tarfile.open(source.location, mode="r|*") as tf:
        for index, member in enumerate(tf):
            key = safe_name(member.name)
            if not member.isreg() or is_litter(key):
                continue  # folders, links and devices are never read
            budget.add(key, member.size)
            items.append(Item(key, member.name, member.size, f"size:{member.size}:mtime:{member.mtime}", index))
    return items


def _list_s3(source: Source, budget: Budget, client=None) -> list[Item]:
    bucket, prefix = split_s3(source.location)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    items = []
    client = client or s3_client(source.endpoint_url)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):
                continue
            key = safe_name(obj["Key"][len(prefix):])
            if is_litter(key):
                continue
            budget.add(key, obj["Size"])
            items.append(Item(key, obj["Key"], obj["Size"], f"etag:{obj['ETag'].strip(chr(34))}:size:{obj['Size']}"))
    return sorted(items, key=lambda i: i.key)


def _list_manifest(source: Source, budget: Budget) -> list[Item]:
    base = Path(source.location).parent
    items = []
    for ref in _manifest_refs(Path(source.location)):
        if ref.startswith("s3://"):
            key = safe_name(ref[len("s3://"):])
            size, fingerprint = -1, f"uri:{ref}"
        else:
            path = (base / ref).resolve()
            key = safe_name(ref if not Path(ref).is_absolute() else path.relative_to(path.anchor).as_posix())
            try:
                st = path.stat()
            except OSError:  # reported as this item's failure when read
                st = None
            size = st.st_size if st else -1
            fingerprint = f"size:{size}:mtime:{st.st_mtime_ns if st else 0}"
            ref = str(path)
        budget.add(key, size)
        items.append(Item(key, ref, size, fingerprint))
    return items


def _manifest_refs(path: Path) -> Iterator[str]:
    """Paths/URIs of a manifest: JSONL lines (a string, or an object with ``path``/``uri``/``key``) or CSV
    rows (a ``path``/``uri`` column, else the first column)."""
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".jsonl":
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = msgspec.json.decode(line)
                except msgspec.DecodeError as exc:
                    raise ArchiveError(f"{path}:{n}: not JSON ({exc})") from None
                if isinstance(value, dict):
                    value = value.get("path") or value.get("uri") or value.get("key")
                if not isinstance(value, str) or not value:
                    raise ArchiveError(f"{path}:{n}: expected a path or an object with 'path' or 'uri'")
                yield value
            return
        rows = list(csv.reader(f))
        if not rows:
            return
        header = [h.strip().lower() for h in rows[0]]
        column = next((header.index(c) for c in ("path", "uri", "key") if c in header), None)
        for row in rows[1:] if column is not None else rows:
            if row and row[column or 0].strip():
                yield row[column or 0].strip()


_LISTERS = {"folder": _list_folder, "zip": _list_zip, "tar": _list_tar, "s3": _list_s3,
            "manifest": _list_manifest}


# --- reading -------------------------------------------------------------------------------------

Media = str | IO[bytes]


def read_items(source: Source, items: Sequence[Item], client=None) -> Iterator[tuple[Item, Media | ArchiveError]]:
    """Each item's media, in the order given: a path (local files), else a spooled file at position 0
    (S3 objects through ``client`` when given).

    One member is held at a time (in memory up to ``SPOOL_BYTES``, on disk beyond), counted against
    ``max_member_bytes`` as it is unpacked. A member that cannot be read yields its error alone.
    The file is closed when the next item is asked for: the caller uses it before that.
    """
    if source.kind == "zip":
        with zipfile.ZipFile(source.location) as zf:
            yield from _spooled(items, source.limits, lambda i: zf.open(i.ref))
        return
    if source.kind == "tar":
        yield from _read_tar(source, items)
        return
    for item in items:
        if source.kind == "folder" or (source.kind == "manifest" and not item.ref.startswith("s3://")):
            yield item, item.ref
            continue
        client = client or s3_client(source.endpoint_url)
        bucket, key = split_s3(item.ref) if item.ref.startswith("s3://") else (split_s3(source.location)[0],
                                                                              item.ref)
        yield from _spooled([item], source.limits,
                            lambda _i, c=client, b=bucket, k=key: c.get_object(Bucket=b, Key=k)["Body"])


def _spooled(items: Sequence[Item], limits: ArchiveLimits, opener) -> Iterator[tuple[Item, Media | ArchiveError]]:
    for item in items:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed below or by the caller
        try:
            with opener(item) as member:
                copy_limited(member, spool, limits.max_member_bytes, item.key)
        except MemberTooLarge as exc:
            spool.close()
            yield item, exc
            continue
        except Exception as exc:  # noqa: BLE001 - a damaged member or a failed GET fails alone
            spool.close()
            yield item, ArchiveError(f"{item.key}: cannot be read ({exc})")
            continue
        spool.seek(0)
        with spool:
            yield item, spool


def _read_tar(source: Source, items: Sequence[Item]) -> Iterator[tuple[Item, Media | ArchiveError]]:
    wanted = {i.index: i for i in items}
    last = max(wanted, default=-1)
    try:
        with tarfile.open(source.location, mode="r|*") as tf:
            for index, member in enumerate(tf):
                item = wanted.pop(index, None)
                if item is not None:
                    yield from _spooled([item], source.limits, lambda _i, m=member: tf.extractfile(m))
                if index >= last:
                    break
    except (tarfile.TarError, EOFError, OSError) as exc:
        for item in wanted.values():
            yield item, ArchiveError(f"{item.key}: cannot be read from the archive ({exc})")
        return
    for item in wanted.values():  # the archive ended early (it changed since it was listed)
        yield item, ArchiveError(f"{item.key}: not found in the archive")


# --- S3 ------------------------------------------------------------------------------------------

def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")``."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ArchiveError(f"{uri}: no bucket named")
    return bucket, key


def s3_client(endpoint_url: str | None = None, storage=None):
    """A boto3 S3 client: the storage settings' (``storage``, else the process's) endpoint and
    credentials, else boto3's own lookup."""
    import boto3
    from botocore.config import Config

    from iam_cluster.settings import get_settings

    s = storage or get_settings().storage
    endpoint = endpoint_url or s.endpoint_url
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=s.region, aws_access_key_id=s.access_key_id,
        aws_secret_access_key=s.secret_access_key,
        config=Config(s3={"addressing_style": "path"}) if endpoint else None)

