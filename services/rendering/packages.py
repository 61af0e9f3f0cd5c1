"""Packages: storing the archives clients upload (checked whole before a byte is kept), and
unpacking them for renders, once per process for as long as they are used.

A package is refused with a 4xx and nothing is kept when it is not the archive its name says
(md5), is over a limit, escapes its root, or is corrupt: :mod:`services.rendering.archive`
reads it through before it is stored. Bytes are stored once by content (``packages/<sha256>``)
and named per account by their md5.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.rendering import archive, repo
from services.rendering.domain import Package, UploadGrant
from shared import errors, store_keys
from shared.logging import get_logger
from shared.storage import BlobNotFound, BlobStore

log = get_logger("darkroom.rendering.packages")


class Packages:
    """The use cases of packages: store one, find one, spend an upload URL on one."""

    def __init__(self, pool: asyncpg.Pool, store: BlobStore, limits: archive.ArchiveLimits):
        self.pool = pool
        self.store = store
        self.limits = limits

    async def find(self, account_id: str, md5: str) -> Package | None:
        """The account's package named ``md5``, or None."""
        async with self.pool.acquire() as conn:
            return await repo.package(conn, uuid.UUID(account_id), md5)

    async def store_package(self, account_id: str, md5: str, data: bytes) -> Package:
        """Check ``data`` is the archive named ``md5`` and a safe package, store it once by
        content and name it in the account; the stored package."""
        summary, sha256 = await self._check(md5, data)
        async with self.pool.acquire() as conn:
            known = await repo.package(conn, uuid.UUID(account_id), md5)
        if known is not None:
            return known
        key = store_keys.package_key(sha256)
        if not await self.store.exists(key):
            await self.store.put(key, data)
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.lock_package_bytes(conn, sha256)
            # The sweeper may have taken the bytes, unrecorded then, between our put and here.
            if not await self.store.exists(key):
                await self.store.put(key, data)
            return await repo.add_package(
                conn,
                uuid.UUID(account_id),
                md5,
                sha256,
                summary.format,
                len(data),
                summary.entries,
                summary.unpacked_bytes,
            )

    async def store_with_grant(self, grant: UploadGrant, data: bytes) -> Package:
        """A PUT to a package upload URL: spend the URL and store the package (409 when the
        URL was used already)."""
        jti = uuid.UUID(grant.jti)
        async with self.pool.acquire() as conn:
            if await repo.upload_url_spent(conn, jti):
                raise errors.Conflict("This upload URL was used already; ask for a new one")
        package = await self.store_package(grant.account_id, grant.md5, data)
        async with self.pool.acquire() as conn:
            expires = datetime.fromtimestamp(grant.expires_at, UTC)
            if not await repo.spend_upload_url(conn, jti, expires):
                raise errors.Conflict("This upload URL was used already; ask for a new one")
        return package

    async def _check(self, md5: str, data: bytes) -> tuple[archive.PackageSummary, str]:
        if len(data) > self.limits.max_packed_bytes:
            raise errors.PayloadTooLarge(
                f"The package exceeds {self.limits.max_packed_bytes} bytes"
            )
        if hashlib.md5(data).hexdigest() != md5:  # noqa: S324 - the clients' package name
            raise errors.InvalidRequest("The package's md5 is not the hash in the URL")
        if archive.sniff_format(data) is None:
            raise errors.UnsupportedMediaType(
                "A package is a zip archive or a zstd-compressed tar archive"
            )
        try:
            summary = await asyncio.to_thread(archive.check_package, data, self.limits)
        except archive.ArchiveRefused as exc:
            if exc.too_large:
                raise errors.PayloadTooLarge(exc.message) from None
            raise errors.InvalidRequest(exc.message) from None
        return summary, hashlib.sha256(data).hexdigest()


class PackageSweeper:
    """Deletes package bytes no record has pointed at for ``grace_seconds``: what a crash
    between a package's write and its commit leaves. The store does not tell a blob's age, so
    the sweeper remembers when it first saw each orphan; the decision is re-checked under the
    bytes' lock, which the upload takes too before it records them."""

    def __init__(self, pool: asyncpg.Pool, store: BlobStore, grace_seconds: float) -> None:
        self.pool = pool
        self.store = store
        self.grace_seconds = grace_seconds
        self._first_seen: dict[str, float] = {}

    async def sweep_once(self) -> int:
        """One pass over ``packages/``; how many orphans were deleted."""
        now = time.monotonic()
        # A key that does not parse is not a package this sweeper wrote: never deleted here.
        named = [
            store_keys.sha256_of_package_key(key)
            async for key in self.store.keys(store_keys.PACKAGE_PREFIX)
        ]
        stored = [sha for sha in named if sha is not None]
        async with self.pool.acquire() as conn:
            recorded = await repo.recorded_packages(conn, stored)
        seen = {sha: self._first_seen.get(sha, now) for sha in stored if sha not in recorded}
        self._first_seen = seen
        deleted = 0
        for sha, first in seen.items():
            if now - first < self.grace_seconds:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                await repo.lock_package_bytes(conn, sha)
                if not await repo.recorded_packages(conn, [sha]):
                    deleted += await self.store.delete(store_keys.package_key(sha))
        if deleted:
            log.info("packages.orphans_deleted", count=deleted)
        return deleted


@dataclass
class _Unpacked:
    path: Path
    users: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failure: BaseException | None = None


def _extract_fresh(data: bytes, path: Path, limits: archive.ArchiveLimits) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    archive.extract_package(data, path, limits)


class UnpackedPackages:
    """Packages unpacked on this process's disk, keyed by content, at most ``entries`` kept
    while unused (a package is rendered for several targets and chunks in a row)."""

    def __init__(self, store: BlobStore, limits: archive.ArchiveLimits, entries: int) -> None:
        self.store = store
        self.limits = limits
        self.entries = entries
        self.root = Path(tempfile.mkdtemp(prefix="darkroom-packages-"))
        self._unpacked: OrderedDict[str, _Unpacked] = OrderedDict()

    @contextlib.asynccontextmanager
    async def open(self, package: Package) -> AsyncIterator[Path]:
        """The unpacked folder of ``package`` for the duration of the block."""
        entry = self._unpacked.get(package.sha256)
        if entry is None:
            entry = _Unpacked(self.root / package.sha256)
            self._unpacked[package.sha256] = entry
            try:
                await self._unpack(package, entry.path)
            except BaseException as exc:
                entry.failure = exc
                del self._unpacked[package.sha256]
                raise
            finally:
                entry.ready.set()
        else:
            await entry.ready.wait()
            if entry.failure is not None:
                raise entry.failure
        self._unpacked.move_to_end(package.sha256)
        entry.users += 1
        try:
            yield entry.path
        finally:
            entry.users -= 1
            self._evict()

    async def _unpack(self, package: Package, path: Path) -> None:
        try:
            data = await self.store.read(package.key)
        except BlobNotFound as exc:
            raise archive.ArchiveRefused("The package's bytes are gone; upload it again") from exc
        await asyncio.to_thread(_extract_fresh, data, path, self.limits)

    def _evict(self) -> None:
        idle = [sha for sha, entry in self._unpacked.items() if entry.users == 0]
        for sha in idle[: max(0, len(self._unpacked) - self.entries)]:
            entry = self._unpacked.pop(sha)
            shutil.rmtree(entry.path, ignore_errors=True)

    def close(self) -> None:
        """Remove every unpacked package."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._unpacked.clear()
