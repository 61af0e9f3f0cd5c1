"""Blob storage behind one interface: a local directory or an S3-compatible bucket.

Everything that stores bytes goes through :class:`BlobStore`; :func:`open_blob_store` picks the
backend from configuration. Both backends promise the same semantics, and the test suite runs
against both:

* keys match ``[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*``, at most 1024 characters, with no ``.`` or
  ``..`` segment, and do not start with the reserved ``.tmp/`` segment; anything else raises
  :class:`ValueError` before any I/O;
* :meth:`BlobStore.put` is atomic: a reader sees the old blob, the new blob or nothing, never a
  partial one, and a failed put leaves nothing behind;
* ranges behave like ``data[start:end]`` for non-negative bounds: an ``end`` past the size is
  clamped and a ``start`` at or past the size gives no bytes;
* a key that is only a prefix of other keys (a "directory") is not a blob.

The contract is in :mod:`shared.storage.base`, the backends in :mod:`shared.storage.local` and
:mod:`shared.storage.s3`; callers import from here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.storage.base import (
    CHUNK_SIZE,
    MAX_PRESIGN_SECONDS,
    S3_PART_SIZE,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    Counted,
    validate_key,
)
from shared.storage.local import LocalBlobStore

if TYPE_CHECKING:
    from shared.storage.s3 import S3BlobStore

__all__ = [
    "CHUNK_SIZE",
    "MAX_PRESIGN_SECONDS",
    "S3_PART_SIZE",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "Counted",
    "LocalBlobStore",
    "S3BlobStore",
    "open_blob_store",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    """``S3BlobStore``, imported on first use: aiobotocore and botocore cost a process ~10 MB
    of resident memory, and only one configured for S3 needs them."""
    if name == "S3BlobStore":
        from shared.storage.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_blob_store(
    *,
    blob_dir: Path,
    s3_endpoint_url: str | None,
    s3_bucket: str | None,
    s3_region: str = "us-east-1",
    s3_access_key: str | None = None,
    s3_secret_key: str | None = None,
) -> BlobStore:
    """Return the configured store: S3 when ``s3_bucket`` is set, else ``blob_dir`` on disk.

    The local directory is created here so a misconfigured path fails at start-up rather than
    on the first upload; the S3 bucket is created if missing.
    """
    if s3_bucket:
        from shared.storage.s3 import S3BlobStore

        return await S3BlobStore.connect(
            s3_endpoint_url, s3_bucket, s3_region, s3_access_key, s3_secret_key
        )
    await asyncio.to_thread(Path(blob_dir).mkdir, parents=True, exist_ok=True)
    return LocalBlobStore(blob_dir)
