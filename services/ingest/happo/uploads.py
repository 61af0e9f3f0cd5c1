"""The Happo Image API's uploads as use cases: offering a signed upload URL, storing an upload
through it (the URL is spent in the transaction that records the image), and storing a
screenshot the renderer took as an image of the account."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import asyncpg
from cachetools import LRUCache

from services.ingest import blobs
from services.ingest import repo as shared_repo
from services.ingest.config import IngestConfig
from services.ingest.content_checks import PNG, Content, Limits, examine_off_loop
from services.ingest.domain import stored_event_data
from services.ingest.happo import domain, repo
from shared import errors
from shared.faults import Faults
from shared.storage import BlobStore

#: What the Image API stores: screenshots are PNGs.
_ACCEPTED = frozenset({PNG})


#: Names known to be taken: (account id as an int, Happo hash) pairs read from the database
#: (an int, not the UUID: ``UUID`` hashes and compares in Python, an int in C).
Known = LRUCache[tuple[int, str], bool]


def known_images() -> Known:
    """An empty memory of taken names for :func:`offer_upload`."""
    return LRUCache(maxsize=domain.KNOWN_CACHED)


async def offer_upload(
    pool: asyncpg.Pool,
    config: IngestConfig,
    known: Known,
    account_id: uuid.UUID,
    happo_hash: str,
) -> str | None:
    """A signed token for one upload of ``happo_hash`` into the account, or None when the
    account already holds an image under that hash.

    A name once taken stays taken (Happo images are never deleted or renamed), so ``known``
    remembers the names found taken and answers them again without the database; a name not
    found is asked again every time, as it may be stored in the meantime.
    """
    name = (account_id.int, happo_hash)
    if known.get(name) or await repo.has_happo_image(pool, account_id, happo_hash):
        known[name] = True
        return None
    return domain.sign_upload_token(
        config.signing_key,
        str(account_id),
        happo_hash,
        int(time.time()) + config.upload_url_seconds,
    )


async def grant_of(pool: asyncpg.Pool, signing_key: str, token: str) -> domain.UploadGrant:
    """The grant of an upload token, checked before the body is read: tampered or expired →
    403 ``forbidden``, already used → 409 ``conflict``."""
    grant = domain.verify_upload_token(signing_key, token, time.time())
    jti = uuid.UUID(grant.jti)
    uuid.UUID(grant.account_id)
    async with pool.acquire() as conn:
        if await shared_repo.upload_url_used(conn, jti):
            raise errors.Conflict(domain.URL_USED)
    return grant


async def store_upload(
    pool: asyncpg.Pool,
    store: BlobStore,
    faults: Faults,
    limits: Limits,
    grant: domain.UploadGrant,
    data: bytes,
) -> None:
    """Store an upload under the grant's hash: a PNG (415 otherwise) matching the hash when it
    is an md5 or SHA-256 hex (422 otherwise). The URL is spent in the same transaction that
    records the image (409 when another upload spent it first)."""
    jti, account_id = uuid.UUID(grant.jti), uuid.UUID(grant.account_id)
    content = await examine_off_loop(data, limits, _ACCEPTED)
    domain.check_client_hash(grant.hash, data)
    expires_at = datetime.fromtimestamp(grant.expires_at, UTC)

    async def register(conn: asyncpg.Connection) -> bool:
        if not await shared_repo.use_upload_url(conn, jti, expires_at):
            raise errors.Conflict(domain.URL_USED)
        return await repo.add_happo_image(conn, account_id, grant.hash, content.sha256)

    event = {
        **stored_event_data(content, str(account_id), domain.SOURCE),
        "happo_hash": grant.hash,
    }
    await blobs.store_content(pool, store, content, data, register, event, faults)


async def store_rendered(
    pool: asyncpg.Pool,
    store: BlobStore,
    faults: Faults,
    limits: Limits,
    account_id: uuid.UUID,
    data: bytes,
) -> tuple[str, Content]:
    """Store a screenshot (a PNG) as an image of the account, named as the Image API names
    uploads (:func:`domain.rendered_hash`); its name and content. Storing the same bytes again
    changes nothing (renders are retried after a crash)."""
    content = await examine_off_loop(data, limits, _ACCEPTED)
    happo_hash = domain.rendered_hash(data)

    async def register(conn: asyncpg.Connection) -> bool:
        return await repo.add_happo_image(conn, account_id, happo_hash, content.sha256)

    event = {
        **stored_event_data(content, str(account_id), domain.SOURCE),
        "happo_hash": happo_hash,
    }
    await blobs.store_content(pool, store, content, data, register, event, faults)
    return happo_hash, content
