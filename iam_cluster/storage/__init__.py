"""Object storage for uploaded media: a local folder (default) or S3, behind one ``Storage`` protocol."""

from __future__ import annotations

from iam_cluster.errors import ConfigError
from iam_cluster.settings import StorageSettings
from iam_cluster.storage.base import (
    ObjectNotFound,
    Storage,
    StorageError,
    StoredObject,
    UploadTooLarge,
    validate_key,
)
from iam_cluster.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StoredObject",
    "UploadTooLarge",
    "make_storage",
    "validate_key",
]


def make_storage(settings: StorageSettings | None = None) -> Storage:
    """Builds the storage backend the settings name.

    For S3 the bucket is created when missing, so a bad endpoint or credentials fail at start-up.

    Args:
        settings: Storage settings; default those of ``get_settings()``.

    Raises:
        ConfigError: the backend is neither ``local`` nor ``s3``.
    """
    if settings is None:
        from iam_cluster.settings import get_settings

        settings = get_settings().storage
    if settings.backend == "local":
        return LocalStorage(settings.root)
    if settings.backend == "s3":
        from iam_cluster.storage.s3 import S3Storage

        storage = S3Storage(
            settings.bucket,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            access_key_id=settings.access_key_id,
            secret_access_key=settings.secret_access_key,
        )
        storage.ensure_bucket()
        return storage
    raise ConfigError(f"STORAGE_BACKEND={settings.backend!r} is not 'local' or 's3'")
