"""The hash file host's use cases: storing the files of one upload (registered to an account,
or anonymous with a delete token each, shown once), all of them or none; removing one record of
a file through the blob protocol (its bytes go when nothing references them any more); and an
image's thumbnail for its owner."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.ingest import blobs
from services.ingest.content_checks import Content, Limits, examine_off_loop
from services.ingest.derivations import DerivativeRequest, Derivatives, Outcome
from services.ingest.domain import stored_event_data
from services.ingest.hashhost import domain, repo
from services.ingest.upload_streaming import Upload
from shared import errors
from shared.faults import Faults
from shared.logging import get_logger
from shared.storage import BlobStore

log = get_logger("darkroom.ingest.hashhost")


@dataclass(frozen=True)
class StoredFile:
    """A stored upload: its content, display name, when anonymous its delete token, and whether
    its record is new (an account's second upload of the same content adds none)."""

    content: Content
    filename: str
    delete_token: str | None
    created: bool = True


async def store_files(
    pool: asyncpg.Pool,
    store: BlobStore,
    faults: Faults,
    limits: Limits,
    account_id: str | None,
    uploads: list[Upload],
) -> list[StoredFile]:
    """Validate and store the files of one upload request, all or none.

    Every file is checked before anything is written, so a refused one (422, 415 …) leaves no
    record and no bytes; should a write fail part-way (the database gone), the records this
    call added are removed again before the error goes on.
    """
    contents = [await examine_off_loop(upload.data, limits) for upload in uploads]
    stored: list[StoredFile] = []
    try:
        for upload, content in zip(uploads, contents, strict=True):
            stored.append(await _store(pool, store, faults, account_id, upload, content))
    except BaseException:
        await _forget(pool, store, account_id, stored)
        raise
    return stored


async def _forget(
    pool: asyncpg.Pool, store: BlobStore, account_id: str | None, stored: list[StoredFile]
) -> None:
    for done in stored:
        if not done.created:
            continue  # the account held it before this request: not ours to take back
        try:
            await remove_file(
                pool,
                store,
                done.content.sha256,
                account_id=account_id,
                delete_token=done.delete_token,
            )
        except Exception:  # the original error is the one to answer; this one is logged
            log.exception("hashhost.undo_failed", hash=done.content.sha256)


async def _store(
    pool: asyncpg.Pool,
    store: BlobStore,
    faults: Faults,
    account_id: str | None,
    upload: Upload,
    content: Content,
) -> StoredFile:
    """Store one examined upload; registered to ``account_id`` (once per content), or
    anonymous (``account_id`` None) with a fresh delete token."""
    filename = domain.clean_filename(upload.filename)
    delete_token = None
    if account_id is not None:
        owner = uuid.UUID(account_id)

        async def register(conn: asyncpg.Connection) -> bool:
            return await repo.add_account_file(conn, owner, content, filename)

    else:
        delete_token = domain.new_delete_token()
        digest = domain.token_digest(delete_token)

        async def register(conn: asyncpg.Connection) -> bool:
            await repo.add_anonymous_file(conn, content, filename, digest)
            return True

    event = stored_event_data(content, account_id, domain.SOURCE)
    created = await blobs.store_content(pool, store, content, upload.data, register, event, faults)
    return StoredFile(content, filename, delete_token, created)


async def remove_file(
    pool: asyncpg.Pool,
    store: BlobStore,
    sha256: str,
    *,
    account_id: str | None = None,
    delete_token: str | None = None,
) -> bool:
    """Remove the anonymous upload ``delete_token`` was issued for or, without a token,
    ``account_id``'s record of ``sha256``; False when there is no such record."""
    if delete_token:
        digest = domain.token_digest(delete_token)

        async def unregister(conn: asyncpg.Connection) -> bool:
            return await repo.remove_anonymous_file(conn, sha256, digest)

    else:
        owner = uuid.UUID(account_id)

        async def unregister(conn: asyncpg.Connection) -> bool:
            return await repo.remove_account_file(conn, owner, sha256)

    return await blobs.remove_record(pool, store, sha256, unregister)


async def thumbnail(
    pool: asyncpg.Pool,
    derivatives: Derivatives,
    account_id: str,
    sha256: str,
    timeout: float,
) -> Outcome:
    """The thumbnail of one of the account's web images (:data:`.domain.THUMBNAIL`), made by
    processing on the first request and stored after. 404 for a file the account does not
    have or that is not a web image; 422 for one processing cannot read; 503 past
    ``timeout``."""
    async with pool.acquire() as conn:
        record = await repo.file_of(conn, uuid.UUID(account_id), sha256)
    if record is None or record.media_type not in domain.THUMBNAIL_TYPES:
        raise errors.NotFound("No such image of yours")
    wanted = DerivativeRequest(sha256, record.media_type, domain.THUMBNAIL)
    outcome = (await derivatives.obtain_for_caller([wanted], timeout))[wanted.key]
    if not outcome.ok:
        raise errors.InvalidRequest(outcome.message or "The image cannot be processed")
    return outcome
