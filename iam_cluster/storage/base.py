"""The ``Storage`` protocol every backend implements, its errors and key validation."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import msgspec

from iam_cluster.errors import IAMError

#: Longest accepted key, in characters (S3 allows 1,024 bytes; keys here are ASCII).
MAX_KEY_LENGTH = 512

# One or more segments of safe characters separated by single slashes: no leading or trailing
# slash, no empty segment, nothing a shell or a URL would need to escape.
_KEY_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


class StorageError(IAMError):
    """Storage failed."""

    code = "storage"


class ObjectNotFound(StorageError):
    """No stored object has this key."""

    code = "not_found"


class UploadTooLarge(StorageError):
    """The upload is larger than allowed."""

    code = "too_large"


class StoredObject(msgspec.Struct, frozen=True):
    """What ``put_stream`` stored: its key, its size in bytes and where it lives."""

    key: str
    size: int
    url: str


def validate_key(key: str) -> str:
    """Checks that ``key`` is a safe relative object key and returns it.

    A key is relative slash-separated segments of ``[A-Za-z0-9._-]``; ``.`` and ``..`` segments,
    leading, trailing or doubled slashes are refused, so a key can never leave the storage root.

    Raises:
        ValueError: the key is not a string, empty, too long or unsafe.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("storage key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"storage key longer than {MAX_KEY_LENGTH} characters")
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid storage key {key!r}")
    if any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"storage key {key!r} has a '.' or '..' segment")
    return key


def counted(chunks: Iterable[bytes], max_bytes: int | None) -> Iterator[bytes]:
    """Yields the non-empty ``chunks``, raising ``UploadTooLarge`` once more than ``max_bytes`` arrived."""
    total = 0
    for chunk in chunks:
        if not chunk:
            continue
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise UploadTooLarge(f"upload is larger than {max_bytes} bytes")
        yield bytes(chunk)


# runtime_checkable: Litestar checks injected dependencies against their annotated type.
@runtime_checkable
class Storage(Protocol):
    """Where uploaded media lives; keys are validated by ``validate_key``."""

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredObject:
        """Stores the concatenated ``chunks`` under ``key``, never holding the whole object in memory.

        The object appears whole or not at all; an existing object with that key is replaced.

        Raises:
            UploadTooLarge: more than ``max_bytes`` arrived; nothing is left behind.
            ValueError: the key is invalid.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; the caller closes it.

        Raises:
            ObjectNotFound: no object has this key.
        """
        ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A context manager giving a real file path holding the object (for decoders).

        Remote backends download to a temporary file removed on exit.

        Raises:
            ObjectNotFound: no object has this key.
        """
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes.

        Raises:
            ObjectNotFound: no object has this key.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether an object has this key."""
        ...

    def delete(self, key: str) -> None:
        """Removes the object; deleting a missing key is not an error."""
        ...

    def url(self, key: str) -> str:
        """Where the object lives (``file://`` or ``s3://``), whether or not it exists."""
        ...
