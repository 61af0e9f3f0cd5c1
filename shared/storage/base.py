"""The blob store's contract: the :class:`BlobStore` interface, its values and errors, and
the key and range checks both backends apply before any I/O (see :mod:`shared.storage`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: Size of the pieces the local backend reads and writes in one worker-thread call, and of the
#: chunks both backends yield from :meth:`BlobStore.open`.
CHUNK_SIZE = 256 * 1024
#: Above this size the S3 backend switches to a multipart upload with parts of this size.
S3_PART_SIZE = 8 * 1024 * 1024
#: The longest validity SigV4 accepts for a presigned URL (seven days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_KEY_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_PREFIX_TAIL_RE = re.compile(r"[A-Za-z0-9._-]*")
_MAX_KEY_LENGTH = 1024  # S3's limit; enforced everywhere so a local store can move to S3.
_MAX_SEGMENT_LENGTH = 255  # NAME_MAX of common filesystems.
_TMP_DIR = ".tmp"


#: ``counted(backend, direction, count)``: told of the bytes a store wrote (``"write"``) or
#: read (``"read"``); a store's ``counted`` attribute (a no-op by default) is how metrics see
#: its traffic.
Counted = Callable[[str, str, int], None]


def _not_counted(_backend: str, _direction: str, _count: int) -> None:
    return None


@dataclass(frozen=True)
class BlobInfo:
    """What the store knows about a blob: its key and its size in bytes."""

    key: str
    size: int


class BlobNotFound(Exception):
    """Raised by :meth:`BlobStore.open` and :meth:`BlobStore.read` when the key has no blob."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob at {key!r}")
        self.key = key


@runtime_checkable
class BlobStore(Protocol):
    """The storage interface of the platform; see the module docstring for the semantics.

    ``open`` and ``keys`` are plain methods returning async iterators (the backends implement
    them as async generators): argument errors raise at the call, I/O errors on iteration.
    """

    async def put(self, key: str, chunks: AsyncIterable[bytes] | bytes) -> BlobInfo:
        """Store ``chunks`` (bytes or an async iterable of bytes) under ``key``, atomically."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the bytes ``[start, end)`` of the blob; ``end=None`` means to the end."""
        ...

    async def read(self, key: str) -> bytes:
        """Return the whole blob; raises :class:`BlobNotFound` when missing."""
        ...

    async def stat(self, key: str) -> BlobInfo | None:
        """Return the blob's :class:`BlobInfo`, or ``None`` when missing."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete the blob; ``True`` when there was one, ``False`` when it was already missing."""
        ...

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over every key starting with ``prefix`` (a string prefix), in no set order."""
        ...

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A URL that GETs the blob for ``expires_in`` seconds, or ``None`` if unsupported."""
        ...

    async def close(self) -> None:
        """Release the store's resources; the store is unusable afterwards."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid blob key, else raise :class:`ValueError`."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key) or len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"invalid blob key: {key!r}")
    segments = key.split("/")
    if segments[0] == _TMP_DIR:
        raise ValueError(f"invalid blob key (reserved {_TMP_DIR}/ prefix): {key!r}")
    for segment in segments:
        if segment in {".", ".."} or len(segment) > _MAX_SEGMENT_LENGTH:
            raise ValueError(f"invalid blob key: {key!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    """Validate a listing prefix and return its directory part (``""`` for the root).

    The part after the last ``/`` is only compared as a string, so it may be partial (``"ab"``
    lists ``"abc/d"``); the part before must be a valid key because it becomes a path.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"invalid key prefix: {prefix!r}")
    directory, _, tail = prefix.rpartition("/")
    if not _PREFIX_TAIL_RE.fullmatch(tail) or len(prefix) > _MAX_KEY_LENGTH:
        raise ValueError(f"invalid key prefix: {prefix!r}")
    if directory or prefix.startswith("/"):
        try:
            validate_key(directory)
        except ValueError:
            raise ValueError(f"invalid key prefix: {prefix!r}") from None
    return directory


def _validate_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range [{start}, {end})")


def _validate_expiry(expires_in: int) -> None:
    if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_in must be in 1..{MAX_PRESIGN_SECONDS} seconds")


async def _iter_chunks(
    data: AsyncIterable[bytes] | bytes, size: int
) -> AsyncIterator[bytes | memoryview]:
    """Present ``bytes`` and async iterables alike, slicing bytes without copying them."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for offset in range(0, len(view), size):
            yield view[offset : offset + size]
        return
    async for chunk in data:
        yield chunk
