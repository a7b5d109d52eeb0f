"""``S3Storage``: objects in an S3 (or MinIO, or moto) bucket through boto3, streamed in parts."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from iam_cluster.storage.base import ObjectNotFound, StorageError, StoredObject, counted, validate_key

#: Multipart part size: S3 wants at least 5 MiB for every part but the last.
PART_SIZE = 8 * 1024 * 1024

_MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3Storage:
    """Stores each object under ``key`` in one bucket.

    Args:
        bucket: The bucket's name.
        endpoint_url: A non-AWS endpoint (MinIO, moto); None for AWS itself.
        region: The bucket's region.
        access_key_id: Explicit credentials; None uses boto3's usual lookup.
        secret_access_key: Explicit credentials; None uses boto3's usual lookup.
        client: A ready boto3 S3 client, used instead of building one.
        part_size: Bytes per multipart part (at least 5 MiB on real S3).
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self.part_size = part_size
        if client is None:
            import boto3
            from botocore.config import Config

            # Path-style addressing: custom endpoints (MinIO, moto on 127.0.0.1) have no bucket DNS.
            config = Config(s3={"addressing_style": "path"}) if endpoint_url else None
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        self.client = client

    def check(self) -> None:
        """The bucket answers ``HeadBucket`` with these credentials."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"bucket {self.bucket!r} unavailable: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Creates the bucket when it does not exist yet."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING:
                raise StorageError(f"cannot reach bucket {self.bucket!r}: {exc}") from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise StorageError(f"cannot create bucket {self.bucket!r}: {exc}") from exc

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredObject:
        """Uploads the chunks: one ``put_object`` when they fit in one part, multipart otherwise.

        At most one part (plus one chunk) is held in memory. A multipart upload only becomes an
        object on completion, and is aborted on any failure, so nothing partial is ever visible.

        Raises:
            UploadTooLarge: more than ``max_bytes`` arrived; no object and no pending upload remain.
            StorageError: S3 refused the upload.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in counted(chunks, max_bytes):
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer[: self.part_size])))
                    del buffer[: self.part_size]
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
            else:
                if buffer:
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer)))
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException as exc:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise StorageError(f"cannot upload {key!r}: {exc}") from exc
            raise
        return StoredObject(key=key, size=size, url=self.url(key))

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def open(self, key: str) -> BinaryIO:
        """A streaming body of the object; the caller closes it.

        Raises:
            ObjectNotFound: no object has this key.
        """
        return self._get(key)

    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        """Only bytes ``start`` to ``end`` are fetched (a ranged GET)."""
        return self._get(key, Range=f"bytes={start}-{end}")

    def _get(self, key: str, **kwargs: Any) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=validate_key(key), **kwargs)["Body"]
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise ObjectNotFound(f"no stored object {key!r}") from None
            raise StorageError(f"cannot read {key!r}: {exc}") from exc

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """Downloads the object to a temporary file (same extension as the key), removed on exit.

        Raises:
            ObjectNotFound: no object has this key.
        """
        suffix = PurePosixPath(validate_key(key)).suffix
        fd, tmp = tempfile.mkstemp(prefix="iam-s3-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f, contextlib.closing(self.open(key)) as body:
                for chunk in iter(lambda: body.read(1024 * 1024), b""):
                    f.write(chunk)
            yield Path(tmp)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def size(self, key: str) -> int:
        """The object's size in bytes.

        Raises:
            ObjectNotFound: no object has this key.
        """
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=validate_key(key))["ContentLength"])
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise ObjectNotFound(f"no stored object {key!r}") from None
            raise StorageError(f"cannot stat {key!r}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether an object has this key."""
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Deletes the object; S3 deletes are idempotent already."""
        self.client.delete_object(Bucket=self.bucket, Key=validate_key(key))

    def url(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{validate_key(key)}"
