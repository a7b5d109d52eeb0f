"""``LocalStorage``: objects as files under one root folder, written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from iam_cluster.storage.base import ObjectNotFound, StorageError, StoredObject, counted, validate_key

#: Temporary files being written start with this prefix, so a crash leaves recognisable debris.
TEMP_PREFIX = ".upload-"


@contextlib.contextmanager
def _disk_errors(key: str) -> Iterator[None]:
    """Turns file-system errors into ``StorageError`` (errors of the upload's source pass through)."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"cannot write {key!r}: {exc}") from exc


class LocalStorage:
    """Stores each object as ``root/key``.

    Args:
        root: The folder holding every object; created when missing.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()

    def check(self) -> None:
        """The root exists (or can be made) and this process may write into it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage root {self.root} is unusable: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"storage root {self.root} is not writable")

    def path(self, key: str) -> Path:
        """The file that holds (or would hold) ``key``.

        Raises:
            ValueError: the key is invalid.
        """
        path = self.root / validate_key(key)
        # Belt and braces: validate_key already refuses anything that could escape the root.
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} leaves the storage root")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredObject:
        """Writes the chunks to a temporary file beside the target, then renames it into place.

        The rename is atomic, so readers see the old object or the new one, never a partial one.

        Raises:
            UploadTooLarge: more than ``max_bytes`` arrived; the temporary file is removed.
            StorageError: the file could not be written.
        """
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        except OSError as exc:
            raise StorageError(f"cannot write {key!r}: {exc}") from exc
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in counted(chunks, max_bytes):
                    with _disk_errors(key):
                        f.write(chunk)
                    size += len(chunk)
                with _disk_errors(key):
                    f.flush()
                    os.fsync(f.fileno())
            with _disk_errors(key):
                os.replace(tmp, path)
        except BaseException:
            # Too large, a failing source or a full disk: the temporary file must not stay behind.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return StoredObject(key=key, size=size, url=self.url(key))

    def open(self, key: str) -> BinaryIO:
        """Opens the object's file for reading.

        Raises:
            ObjectNotFound: no object has this key.
        """
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no stored object {key!r}") from None

    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        """The object's file, positioned at ``start``."""
        stream = self.open(key)
        stream.seek(start)
        return stream

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """Yields the object's own file; nothing is copied or removed.

        Raises:
            ObjectNotFound: no object has this key.
        """
        path = self.path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no stored object {key!r}")
        yield path

    def size(self, key: str) -> int:
        """The object's size in bytes.

        Raises:
            ObjectNotFound: no object has this key.
        """
        path = self.path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no stored object {key!r}")
        return path.stat().st_size

    def exists(self, key: str) -> bool:
        """Whether a file holds ``key``."""
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        """Removes the object's file if there is one."""
        path = self.path(key)
        if path.is_file():
            path.unlink(missing_ok=True)

    def url(self, key: str) -> str:
        """``file://`` URL of the object's file."""
        return self.path(key).as_uri()
