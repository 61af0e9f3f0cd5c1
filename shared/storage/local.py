"""The local-directory backend of :class:`shared.storage.BlobStore`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat as stat_mod
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO

from shared.storage.base import (
    _TMP_DIR,
    CHUNK_SIZE,
    BlobInfo,
    BlobNotFound,
    Counted,
    _iter_chunks,
    _not_counted,
    _validate_expiry,
    _validate_prefix,
    _validate_range,
    validate_key,
)


class LocalBlobStore:
    """Blobs as files under ``root``; the key is the path relative to ``root``.

    Puts are written to ``root/.tmp/`` and renamed into place, so the temp folder must stay on
    the same filesystem as the blobs. Blocking file I/O runs in worker threads, one
    :data:`CHUNK_SIZE` piece at a time, so a big blob never stalls the event loop.
    """

    backend = "local"

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created on the first put if missing) as the store's directory."""
        self.root = Path(root)
        self.counted: Counted = _not_counted

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    async def put(self, key: str, chunks: AsyncIterable[bytes] | bytes) -> BlobInfo:
        """Write the blob to a temp file, fsync it and rename it over ``key`` atomically."""
        path = self._path(key)
        tmp_path, file = await asyncio.to_thread(self._create_temp)
        size = 0
        try:
            pending = bytearray()
            async for chunk in _iter_chunks(chunks, CHUNK_SIZE):
                size += len(chunk)
                pending += chunk
                # Coalescing keeps tiny chunks from costing one thread hop each.
                if len(pending) >= CHUNK_SIZE:
                    await asyncio.to_thread(file.write, pending)
                    pending = bytearray()
            await asyncio.to_thread(self._commit, file, pending, tmp_path, path)
        except BaseException:
            # Synchronous on purpose: this also runs on cancellation, when awaiting a thread
            # could be interrupted again and leak the temp file; both calls are quick.
            file.close()
            tmp_path.unlink(missing_ok=True)
            raise
        self.counted(self.backend, "write", size)
        return BlobInfo(key, size)

    def _create_temp(self) -> tuple[Path, IO[bytes]]:
        tmp_dir = self.root / _TMP_DIR
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp_path = tmp_dir / uuid.uuid4().hex
        return tmp_path, tmp_path.open("xb")

    @staticmethod
    def _commit(file: IO[bytes], rest: bytes | bytearray, tmp_path: Path, path: Path) -> None:
        with file:
            file.write(rest)
            file.flush()
            os.fsync(file.fileno())
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, path)
        # The rename itself is only durable once the directory entry reaches the disk.
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the bytes ``[start, end)`` in chunks of at most :data:`CHUNK_SIZE`.

        Invalid arguments raise :class:`ValueError` here; a missing blob raises
        :class:`BlobNotFound` from the first iteration, before any bytes. Close a partially
        consumed iterator (``contextlib.aclosing``) to release the file promptly.
        """
        path = self._path(key)
        _validate_range(start, end)
        return self._read_range(key, path, start, end)

    async def _read_range(
        self, key: str, path: Path, start: int, end: int | None
    ) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(self._open_file, key, path)
        try:
            if start:
                await asyncio.to_thread(file.seek, start)
            remaining = end - start if end is not None else None
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await asyncio.to_thread(file.read, want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                self.counted(self.backend, "read", len(chunk))
                yield chunk
        finally:
            file.close()

    @staticmethod
    def _open_file(key: str, path: Path) -> IO[bytes]:
        try:
            file = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(key) from None
        if not stat_mod.S_ISREG(os.fstat(file.fileno()).st_mode):
            file.close()
            raise BlobNotFound(key)
        return file

    async def read(self, key: str) -> bytes:
        """Return the whole blob (one thread hop); raises :class:`BlobNotFound` when missing."""
        path = self._path(key)
        data = await asyncio.to_thread(self._read_file, key, path)
        self.counted(self.backend, "read", len(data))
        return data

    @classmethod
    def _read_file(cls, key: str, path: Path) -> bytes:
        with cls._open_file(key, path) as file:
            return file.read()

    async def stat(self, key: str) -> BlobInfo | None:
        """Return the blob's size, or ``None`` when there is no regular file at ``key``."""
        path = self._path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        return BlobInfo(key, st.st_size)

    async def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        return await self.stat(key) is not None

    async def delete(self, key: str) -> bool:
        """Remove the file; ``True`` when it existed.

        Emptied directories are left in place: removing them would race with a concurrent put
        that has just created its parent directory and is about to rename into it.
        """
        path = self._path(key)
        return await asyncio.to_thread(self._delete_file, path)

    @staticmethod
    def _delete_file(path: Path) -> bool:
        try:
            if not stat_mod.S_ISREG(path.lstat().st_mode):
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Iterate over the keys starting with ``prefix``, skipping the temp folder.

        Files whose names are not valid keys (dropped in by hand) are skipped too, so every key
        yielded can be passed back to the store.
        """
        directory = _validate_prefix(prefix)
        return self._walk(directory, prefix)

    async def _walk(self, directory: str, prefix: str) -> AsyncIterator[str]:
        stack = [directory]
        while stack:
            rel = stack.pop()
            base = self.root.joinpath(*rel.split("/")) if rel else self.root
            files, dirs = await asyncio.to_thread(self._scan, base)
            for name in files:
                key = f"{rel}/{name}" if rel else name
                if key.startswith(prefix) and _is_valid_key(key):
                    yield key
            for name in dirs:
                sub = f"{rel}/{name}" if rel else name
                # The reserved temp folder is not a valid key, so this also skips it.
                if not _is_valid_key(sub):
                    continue
                if (sub + "/").startswith(prefix) or prefix.startswith(sub + "/"):
                    stack.append(sub)

    @staticmethod
    def _scan(directory: Path) -> tuple[list[str], list[str]]:
        files: list[str] = []
        dirs: list[str] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        return files, dirs

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        """Always ``None``: local blobs are served by the caller itself."""
        validate_key(key)
        _validate_expiry(expires_in)
        return None

    async def close(self) -> None:
        """Nothing to release; present for the interface."""


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True
