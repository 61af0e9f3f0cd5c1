"""All of ingest's SQL (the pool's search_path is the ``ingest`` schema)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, TypeVar

import asyncpg

from services.ingest.domain import AnalysisOutcome, Content

T = TypeVar("T")


@dataclass(frozen=True)
class Blob:
    """A stored content: what serving needs to know about it."""

    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class FileRecord:
    """A hash-host file as the "my files" page shows it."""

    sha256: str
    filename: str
    media_type: str
    size: int
    created_at: datetime


async def lock_blob(conn: asyncpg.Connection, sha256: str) -> None:
    """Serialise, until the transaction ends, everything that creates or removes this blob."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"ingest.blob.{sha256}")


async def add_blob(conn: asyncpg.Connection, content: Content) -> bool:
    """Insert the blob row unless present; True when it was inserted now."""
    inserted = await conn.fetchval(
        "INSERT INTO blobs (sha256, size, media_type, width, height, frames)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING RETURNING true",
        content.sha256,
        content.size,
        content.media_type,
        content.width,
        content.height,
        content.frames,
    )
    return bool(inserted)


async def blob_row_exists(conn: asyncpg.Connection, sha256: str) -> bool:
    """True while a blob row exists for ``sha256``."""
    return bool(await conn.fetchval("SELECT true FROM blobs WHERE sha256 = $1", sha256))


async def known_blobs(conn: asyncpg.Connection, digests: list[str]) -> set[str]:
    """Which of ``digests`` have a blob row."""
    rows = await conn.fetch("SELECT sha256 FROM blobs WHERE sha256 = ANY($1::text[])", digests)
    return {row["sha256"] for row in rows}


async def drop_blob_if_unreferenced(conn: asyncpg.Connection, sha256: str) -> bool:
    """Delete the blob row when no record (file, Happo, Progimage or Haut.ai image) references
    it; True when deleted.

    Call it holding :func:`lock_blob`, so no record can be added between check and delete.
    """
    deleted = await conn.fetchval(
        "DELETE FROM blobs b WHERE b.sha256 = $1"
        " AND NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM happo_images h WHERE h.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM progimage_images p WHERE p.sha256 = b.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM haut_images i WHERE i.sha256 = b.sha256)"
        " RETURNING true",
        sha256,
    )
    return bool(deleted)


async def add_account_file(
    conn: asyncpg.Connection, account_id: uuid.UUID, content: Content, filename: str
) -> bool:
    """Register ``content`` to an account (once per content); True when it is new there."""
    inserted = await conn.fetchval(
        "INSERT INTO files (id, account_id, sha256, filename, media_type)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (account_id, sha256) WHERE account_id IS NOT NULL DO NOTHING"
        " RETURNING true",
        uuid.uuid4(),
        account_id,
        content.sha256,
        filename,
        content.media_type,
    )
    return bool(inserted)


async def add_anonymous_file(
    conn: asyncpg.Connection, content: Content, filename: str, delete_token_hash: bytes
) -> None:
    """Record an anonymous upload with the digest of its delete token."""
    await conn.execute(
        "INSERT INTO files (id, sha256, filename, media_type, delete_token_hash)"
        " VALUES ($1, $2, $3, $4, $5)",
        uuid.uuid4(),
        content.sha256,
        filename,
        content.media_type,
        delete_token_hash,
    )


async def remove_account_file(conn: asyncpg.Connection, account_id: uuid.UUID, sha256: str) -> bool:
    """Delete an account's record of ``sha256``; True when there was one."""
    deleted = await conn.fetchval(
        "DELETE FROM files WHERE account_id = $1 AND sha256 = $2 RETURNING true",
        account_id,
        sha256,
    )
    return bool(deleted)


async def remove_anonymous_file(
    conn: asyncpg.Connection, sha256: str, delete_token_hash: bytes
) -> bool:
    """Delete the anonymous record of ``sha256`` holding this delete token; True when found."""
    deleted = await conn.fetchval(
        "DELETE FROM files WHERE id = (SELECT id FROM files WHERE account_id IS NULL"
        " AND sha256 = $1 AND delete_token_hash = $2 LIMIT 1) RETURNING true",
        sha256,
        delete_token_hash,
    )
    return bool(deleted)


async def served_file(conn: asyncpg.Connection, sha256: str) -> Blob | None:
    """The blob behind ``/f/<sha256>``: only content some hash-host file record holds."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM blobs b WHERE b.sha256 = $1"
        " AND EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256)",
        sha256,
    )
    return Blob(**row) if row else None


async def files_of(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[FileRecord]:
    """An account's hash-host files, newest first."""
    rows = await conn.fetch(
        "SELECT f.sha256, f.filename, f.media_type, b.size, f.created_at"
        " FROM files f JOIN blobs b USING (sha256) WHERE f.account_id = $1"
        " ORDER BY f.created_at DESC LIMIT 1000",
        account_id,
    )
    return [FileRecord(**row) for row in rows]


async def happo_image(
    conn: asyncpg.Connection, account_id: uuid.UUID, happo_hash: str
) -> Blob | None:
    """The blob an account's Happo hash names, if it was uploaded."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM happo_images h JOIN blobs b USING (sha256)"
        " WHERE h.account_id = $1 AND h.hash = $2",
        account_id,
        happo_hash,
    )
    return Blob(**row) if row else None


async def happo_images(
    conn: asyncpg.Connection, account_id: uuid.UUID, hashes: list[str]
) -> list[asyncpg.Record]:
    """The account's Happo images among ``hashes``: hash, sha256, media type, width, height."""
    return await conn.fetch(
        "SELECT h.hash, b.sha256, b.media_type, b.width, b.height"
        " FROM happo_images h JOIN blobs b USING (sha256)"
        " WHERE h.account_id = $1 AND h.hash = ANY($2::text[])",
        account_id,
        hashes,
    )


async def add_happo_image(
    conn: asyncpg.Connection, account_id: uuid.UUID, happo_hash: str, sha256: str
) -> bool:
    """Name ``sha256`` by the client's hash in an account; False when the name was taken."""
    inserted = await conn.fetchval(
        "INSERT INTO happo_images (account_id, hash, sha256) VALUES ($1, $2, $3)"
        " ON CONFLICT (account_id, hash) DO NOTHING RETURNING true",
        account_id,
        happo_hash,
        sha256,
    )
    return bool(inserted)


async def upload_url_used(conn: asyncpg.Connection, jti: uuid.UUID) -> bool:
    """True when the signed upload URL ``jti`` was used already."""
    return bool(await conn.fetchval("SELECT true FROM used_upload_urls WHERE jti = $1", jti))


async def use_upload_url(conn: asyncpg.Connection, jti: uuid.UUID, expires_at: datetime) -> bool:
    """Mark the upload URL ``jti`` used; False when it already was."""
    inserted = await conn.fetchval(
        "INSERT INTO used_upload_urls (jti, expires_at) VALUES ($1, $2)"
        " ON CONFLICT (jti) DO NOTHING RETURNING true",
        jti,
        expires_at,
    )
    return bool(inserted)


async def forget_expired_upload_urls(conn: asyncpg.Connection) -> int:
    """Drop used-URL ids whose URLs have expired (they cannot be replayed any more)."""
    status = await conn.execute("DELETE FROM used_upload_urls WHERE expires_at < now()")
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True)
class ProgimageImage:
    """A Progimage image: its original's hash and the stored derivatives of each variant."""

    id: uuid.UUID
    user_id: uuid.UUID
    sha256: str
    variants: dict
    extension: str
    created_at: datetime
    updated_at: datetime


_PROGIMAGE_COLUMNS = "id, user_id, sha256, variants, extension, created_at, updated_at"


async def progimage_original(
    conn: asyncpg.Connection, user_id: uuid.UUID, image_id: uuid.UUID
) -> Blob | None:
    """The original behind one of ``user_id``'s images (None for anyone else's)."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM progimage_images p JOIN blobs b USING (sha256)"
        " WHERE p.id = $1 AND p.user_id = $2",
        image_id,
        user_id,
    )
    return Blob(**row) if row else None


async def add_progimage_image(
    conn: asyncpg.Connection,
    *,
    image_id: uuid.UUID,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    sha256: str,
    options: dict,
    variants: dict,
    extension: str,
    order: int,
) -> ProgimageImage:
    """Record an image; ``order`` (its index in the request) keeps a bulk's items ordered
    newest-last within the one transaction time."""
    row = await conn.fetchrow(
        "INSERT INTO progimage_images"
        " (id, account_id, user_id, sha256, options, variants, extension, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " now() + make_interval(secs => $8 / 1000.0), now() + make_interval(secs => $8 / 1000.0))"
        f" RETURNING {_PROGIMAGE_COLUMNS}",
        image_id,
        account_id,
        user_id,
        sha256,
        options,
        variants,
        extension,
        order,
    )
    return ProgimageImage(**row)


async def progimage_images_of(
    conn: asyncpg.Connection, user_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[ProgimageImage], int]:
    """A page of ``user_id``'s images, newest first, and how many there are in all."""
    rows = await conn.fetch(
        f"SELECT {_PROGIMAGE_COLUMNS}, count(*) OVER () AS total FROM progimage_images"
        " WHERE user_id = $1 ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3",
        user_id,
        offset,
        limit,
    )
    if not rows:
        total = await conn.fetchval(
            "SELECT count(*) FROM progimage_images WHERE user_id = $1", user_id
        )
        return [], int(total)
    total = int(rows[0]["total"])
    return [ProgimageImage(**{k: v for k, v in row.items() if k != "total"}) for row in rows], total


async def progimage_image(conn: asyncpg.Connection, image_id: uuid.UUID) -> ProgimageImage | None:
    """One image by id, for serving its public URLs."""
    row = await conn.fetchrow(
        f"SELECT {_PROGIMAGE_COLUMNS} FROM progimage_images WHERE id = $1", image_id
    )
    return ProgimageImage(**row) if row else None


# --- Haut.ai-style subjects, batches and images ------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """Which page of a list, filtered by ``search`` (name) and ordered by ``order`` (column,
    descending) pairs whose columns come from :mod:`domain`'s whitelists."""

    search: str | None
    order: tuple[tuple[str, bool], ...]
    offset: int
    limit: int


@dataclass(frozen=True)
class Dataset:
    """A dataset of a company."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    image_type_id: int
    created_at: datetime


@dataclass(frozen=True)
class Subject:
    """A subject of a dataset."""

    id: uuid.UUID
    account_id: uuid.UUID
    dataset_id: uuid.UUID
    name: str
    birth_date: date | None
    biological_sex: str | None
    meta: dict | None
    created_at: datetime


@dataclass(frozen=True)
class Batch:
    """An image batch of a subject."""

    id: uuid.UUID
    account_id: uuid.UUID
    subject_id: uuid.UUID
    creation_time: datetime
    app_args: dict | None
    computed_at: datetime | None


@dataclass(frozen=True)
class HautImage:
    """An image of a subject: its upload state and, once analysed, its quality."""

    id: uuid.UUID
    account_id: uuid.UUID
    subject_id: uuid.UUID
    batch_id: uuid.UUID
    name: str | None
    image_type_id: int
    side_id: int
    light_id: int
    meta: dict | None
    status: str
    upload_expires_at: datetime
    sha256: str | None
    media_type: str | None
    algorithm: str | None
    quality_score: float | None
    quality_feedback: str | None
    quality_issues: list | None
    problems: list | None
    quality_result: dict | None
    created_at: datetime


@dataclass(frozen=True)
class AuxImage:
    """An aux image of an analysed image."""

    id: uuid.UUID
    image_id: uuid.UUID
    aux_image_type: str
    algo_app: str
    key: str
    media_type: str
    bytes: int
    width: int | None
    height: int | None
    created_at: datetime


def _columns(cls: type, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + f.name for f in fields(cls))


async def _one(conn: asyncpg.Connection, cls: Callable[..., T], sql: str, *args: Any) -> T | None:
    row = await conn.fetchrow(sql, *args)
    return cls(**row) if row else None


async def _page(
    conn: asyncpg.Connection,
    cls: Callable[..., T],
    table: str,
    where: str,
    args: Sequence[Any],
    query: ListQuery,
) -> tuple[list[T], int]:
    """A page of ``table``'s rows matching ``where`` (``$1``… are ``args``) and the count of
    all of them."""
    params = list(args)
    if query.search:
        params.append(query.search)
        where += f" AND position(lower(${len(params)}) in lower(coalesce(name, ''))) > 0"
    order = ", ".join(
        f"{column} {'DESC' if descending else 'ASC'} NULLS LAST"
        for column, descending in query.order
    )
    params += [query.offset, query.limit]
    rows = await conn.fetch(
        f"SELECT {_columns(cls)}, count(*) OVER () AS total FROM {table} WHERE {where}"
        f" ORDER BY {order}, id OFFSET ${len(params) - 1} LIMIT ${len(params)}",
        *params,
    )
    if not rows:
        total = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *params[:-2])
        return [], int(total)
    return [cls(**{k: v for k, v in row.items() if k != "total"}) for row in rows], int(
        rows[0]["total"]
    )


def _assignments(changes: dict[str, object], allowed: frozenset[str], first: int) -> str:
    assert set(changes) <= allowed
    return ", ".join(f"{name} = ${first + i}" for i, name in enumerate(changes))


async def add_dataset(
    conn: asyncpg.Connection, account_id: uuid.UUID, name: str, image_type_id: int
) -> Dataset:
    """Create a dataset."""
    row = await conn.fetchrow(
        "INSERT INTO datasets (id, account_id, name, image_type_id) VALUES ($1, $2, $3, $4)"
        f" RETURNING {_columns(Dataset)}",
        uuid.uuid4(),
        account_id,
        name,
        image_type_id,
    )
    return Dataset(**row)


async def dataset(
    conn: asyncpg.Connection, account_id: uuid.UUID, dataset_id: uuid.UUID, lock: str = ""
) -> Dataset | None:
    """The company's dataset ``dataset_id``; ``lock`` (``FOR KEY SHARE``, ``FOR UPDATE``)
    locks it until the transaction ends."""
    assert lock in {"", "FOR KEY SHARE", "FOR UPDATE"}
    return await _one(
        conn,
        Dataset,
        f"SELECT {_columns(Dataset)} FROM datasets WHERE id = $1 AND account_id = $2 {lock}",
        dataset_id,
        account_id,
    )


async def datasets_of(
    conn: asyncpg.Connection, account_id: uuid.UUID, query: ListQuery
) -> tuple[list[Dataset], int]:
    """A page of the company's datasets and how many there are."""
    return await _page(conn, Dataset, "datasets", "account_id = $1", [account_id], query)


async def update_dataset(
    conn: asyncpg.Connection, account_id: uuid.UUID, dataset_id: uuid.UUID, changes: dict
) -> Dataset | None:
    """Apply ``changes`` (name, image_type_id) to the company's dataset; None when missing."""
    if not changes:
        return await dataset(conn, account_id, dataset_id)
    sets = _assignments(changes, frozenset({"name", "image_type_id"}), 3)
    return await _one(
        conn,
        Dataset,
        f"UPDATE datasets SET {sets} WHERE id = $1 AND account_id = $2"
        f" RETURNING {_columns(Dataset)}",
        dataset_id,
        account_id,
        *changes.values(),
    )


async def subject_ids_of(conn: asyncpg.Connection, dataset_id: uuid.UUID) -> list[uuid.UUID]:
    """Every subject of a dataset."""
    rows = await conn.fetch("SELECT id FROM subjects WHERE dataset_id = $1", dataset_id)
    return [row["id"] for row in rows]


async def delete_dataset_if_empty(
    conn: asyncpg.Connection, account_id: uuid.UUID, dataset_id: uuid.UUID
) -> bool | None:
    """Delete the dataset unless it has subjects (False); None when there is no such dataset.
    Run it in a transaction: the dataset is locked, so no subject can be added meanwhile."""
    if await dataset(conn, account_id, dataset_id, "FOR UPDATE") is None:
        return None
    if await conn.fetchval("SELECT true FROM subjects WHERE dataset_id = $1 LIMIT 1", dataset_id):
        return False
    await conn.execute("DELETE FROM datasets WHERE id = $1", dataset_id)
    return True


async def add_subject(
    conn: asyncpg.Connection, account_id: uuid.UUID, dataset_id: uuid.UUID, values: dict
) -> Subject:
    """Create a subject in a dataset (``values``: name, birth_date, biological_sex, meta)."""
    row = await conn.fetchrow(
        "INSERT INTO subjects (id, account_id, dataset_id, name, birth_date, biological_sex,"
        f" meta) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_columns(Subject)}",
        uuid.uuid4(),
        account_id,
        dataset_id,
        values["name"],
        values.get("birth_date"),
        values.get("biological_sex"),
        values.get("meta"),
    )
    return Subject(**row)


async def subject(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    subject_id: uuid.UUID,
    dataset_id: uuid.UUID | None = None,
    lock: str = "",
) -> Subject | None:
    """The company's subject ``subject_id`` (in ``dataset_id`` when given); ``lock`` as for
    :func:`dataset`."""
    assert lock in {"", "FOR KEY SHARE", "FOR UPDATE"}
    return await _one(
        conn,
        Subject,
        f"SELECT {_columns(Subject)} FROM subjects WHERE id = $1 AND account_id = $2"
        f" AND ($3::uuid IS NULL OR dataset_id = $3) {lock}",
        subject_id,
        account_id,
        dataset_id,
    )


async def subjects_of(
    conn: asyncpg.Connection, account_id: uuid.UUID, dataset_id: uuid.UUID, query: ListQuery
) -> tuple[list[Subject], int]:
    """A page of a dataset's subjects and how many there are."""
    return await _page(
        conn,
        Subject,
        "subjects",
        "account_id = $1 AND dataset_id = $2",
        [account_id, dataset_id],
        query,
    )


async def update_subject(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    dataset_id: uuid.UUID,
    subject_id: uuid.UUID,
    changes: dict,
) -> Subject | None:
    """Apply ``changes`` to the company's subject in ``dataset_id``; None when missing."""
    if not changes:
        return await subject(conn, account_id, subject_id, dataset_id)
    sets = _assignments(changes, frozenset({"name", "birth_date", "biological_sex", "meta"}), 4)
    return await _one(
        conn,
        Subject,
        f"UPDATE subjects SET {sets} WHERE id = $1 AND account_id = $2 AND dataset_id = $3"
        f" RETURNING {_columns(Subject)}",
        subject_id,
        account_id,
        dataset_id,
        *changes.values(),
    )


async def image_ids_of_subject(conn: asyncpg.Connection, subject_id: uuid.UUID) -> list[uuid.UUID]:
    """Every image of a subject."""
    rows = await conn.fetch("SELECT id FROM haut_images WHERE subject_id = $1", subject_id)
    return [row["id"] for row in rows]


async def delete_subject_if_empty(
    conn: asyncpg.Connection, account_id: uuid.UUID, subject_id: uuid.UUID
) -> bool | None:
    """Delete the subject and its batches unless it has images (False); None when there is no
    such subject. Run it in a transaction: the subject is locked, so no image can be added."""
    if await subject(conn, account_id, subject_id, lock="FOR UPDATE") is None:
        return None
    if await conn.fetchval(
        "SELECT true FROM haut_images WHERE subject_id = $1 LIMIT 1", subject_id
    ):
        return False
    await conn.execute("DELETE FROM image_batches WHERE subject_id = $1", subject_id)
    await conn.execute("DELETE FROM subjects WHERE id = $1", subject_id)
    return True


async def add_batch(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    subject_id: uuid.UUID,
    creation_time: datetime | None,
    app_args: dict | None,
) -> Batch:
    """Create a batch for a subject (``creation_time`` now when not given)."""
    row = await conn.fetchrow(
        "INSERT INTO image_batches (id, account_id, subject_id, creation_time, app_args)"
        f" VALUES ($1, $2, $3, coalesce($4, now()), $5) RETURNING {_columns(Batch)}",
        uuid.uuid4(),
        account_id,
        subject_id,
        creation_time,
        app_args,
    )
    return Batch(**row)


async def batch(
    conn: asyncpg.Connection, account_id: uuid.UUID | None, batch_id: uuid.UUID, lock: str = ""
) -> Batch | None:
    """The batch ``batch_id`` (the company's, when ``account_id`` is given); ``lock``
    (``FOR SHARE``, ``FOR UPDATE``) locks it until the transaction ends."""
    assert lock in {"", "FOR SHARE", "FOR UPDATE"}
    return await _one(
        conn,
        Batch,
        f"SELECT {_columns(Batch)} FROM image_batches WHERE id = $1"
        f" AND ($2::uuid IS NULL OR account_id = $2) {lock}",
        batch_id,
        account_id,
    )


async def mark_computed(
    conn: asyncpg.Connection, batch_id: uuid.UUID, app_args: dict | None
) -> list[HautImage]:
    """Close a batch for compute with ``app_args``: its uploaded images become ``computing``;
    returns them (call it holding the batch ``FOR UPDATE``)."""
    await conn.execute(
        "UPDATE image_batches SET computed_at = now(), app_args = $2 WHERE id = $1",
        batch_id,
        app_args,
    )
    rows = await conn.fetch(
        "UPDATE haut_images SET status = 'computing' WHERE batch_id = $1 AND status = 'uploaded'"
        f" RETURNING {_columns(HautImage)}",
        batch_id,
    )
    return [HautImage(**row) for row in rows]


async def add_haut_image(
    conn: asyncpg.Connection,
    *,
    account_id: uuid.UUID,
    subject_id: uuid.UUID,
    batch_id: uuid.UUID,
    image_type_id: int,
    side_id: int,
    light_id: int,
    name: str | None,
    meta: dict | None,
    upload_expires_at: datetime,
) -> HautImage:
    """Create a pending image (its bytes arrive through its signed upload URL)."""
    row = await conn.fetchrow(
        "INSERT INTO haut_images (id, account_id, subject_id, batch_id, image_type_id, side_id,"
        " light_id, name, meta, status, upload_expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10)"
        f" RETURNING {_columns(HautImage)}",
        uuid.uuid4(),
        account_id,
        subject_id,
        batch_id,
        image_type_id,
        side_id,
        light_id,
        name,
        meta,
        upload_expires_at,
    )
    return HautImage(**row)


async def haut_image(
    conn: asyncpg.Connection, account_id: uuid.UUID | None, image_id: uuid.UUID, lock: str = ""
) -> HautImage | None:
    """The image ``image_id`` (the company's, when ``account_id`` is given); ``lock``
    (``FOR UPDATE``) locks it until the transaction ends."""
    assert lock in {"", "FOR UPDATE"}
    return await _one(
        conn,
        HautImage,
        f"SELECT {_columns(HautImage)} FROM haut_images WHERE id = $1"
        f" AND ($2::uuid IS NULL OR account_id = $2) {lock}",
        image_id,
        account_id,
    )


async def images_of_subject(
    conn: asyncpg.Connection, account_id: uuid.UUID, subject_id: uuid.UUID, query: ListQuery
) -> tuple[list[HautImage], int]:
    """A page of a subject's images and how many there are."""
    return await _page(
        conn,
        HautImage,
        "haut_images",
        "account_id = $1 AND subject_id = $2",
        [account_id, subject_id],
        query,
    )


async def aux_images_of(
    conn: asyncpg.Connection, image_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[AuxImage]]:
    """The aux images of each of ``image_ids`` (in the order they were made)."""
    rows = await conn.fetch(
        f"SELECT {_columns(AuxImage)} FROM aux_images WHERE image_id = ANY($1::uuid[])"
        " ORDER BY created_at, aux_image_type",
        list(image_ids),
    )
    found: dict[uuid.UUID, list[AuxImage]] = {image_id: [] for image_id in image_ids}
    for row in rows:
        found[row["image_id"]].append(AuxImage(**row))
    return found


async def aux_image(
    conn: asyncpg.Connection, image_id: uuid.UUID, aux_id: uuid.UUID
) -> AuxImage | None:
    """One aux image of an image."""
    return await _one(
        conn,
        AuxImage,
        f"SELECT {_columns(AuxImage)} FROM aux_images WHERE id = $1 AND image_id = $2",
        aux_id,
        image_id,
    )


async def haut_original(conn: asyncpg.Connection, image_id: uuid.UUID) -> Blob | None:
    """The uploaded original of an image (None while pending, or when deleted)."""
    row = await conn.fetchrow(
        "SELECT b.sha256, b.size, b.media_type FROM haut_images i JOIN blobs b USING (sha256)"
        " WHERE i.id = $1",
        image_id,
    )
    return Blob(**row) if row else None


async def attach_upload(conn: asyncpg.Connection, image_id: uuid.UUID, content: Content) -> bool:
    """Give a pending image its original; False when it is not pending (any more)."""
    updated = await conn.fetchval(
        "UPDATE haut_images SET status = 'uploaded', sha256 = $2, media_type = $3"
        " WHERE id = $1 AND status = 'pending' RETURNING true",
        image_id,
        content.sha256,
        content.media_type,
    )
    return bool(updated)


async def record_analysis(
    conn: asyncpg.Connection, image_id: uuid.UUID, sha256: str, outcome: AnalysisOutcome
) -> bool:
    """Fill an image's quality fields and replace its aux images; False (nothing changed) when
    the image is gone or holds other bytes now."""
    updated = await conn.fetchval(
        "UPDATE haut_images SET status = 'done', algorithm = $3, quality_score = $4,"
        " quality_feedback = $5, quality_issues = $6, problems = $7, quality_result = $8,"
        " analysed_at = now() WHERE id = $1 AND sha256 = $2 RETURNING true",
        image_id,
        sha256,
        outcome.algorithm,
        outcome.quality_score,
        outcome.quality_feedback,
        outcome.quality_issues,
        outcome.problems,
        outcome.quality_result,
    )
    if not updated:
        return False
    await conn.execute("DELETE FROM aux_images WHERE image_id = $1", image_id)
    for aux in outcome.aux_images:
        await conn.execute(
            "INSERT INTO aux_images (id, image_id, aux_image_type, algo_app, key, media_type,"
            " bytes, width, height) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            uuid.uuid4(),
            image_id,
            aux.aux_image_type,
            aux.algo_app,
            aux.key,
            aux.media_type,
            aux.bytes,
            aux.width,
            aux.height,
        )
    return True


async def record_analysis_failure(
    conn: asyncpg.Connection,
    image_id: uuid.UUID,
    sha256: str,
    feedback: str,
    problems: list[str],
) -> bool:
    """Mark an image's analysis failed with ``feedback``; False when the image is gone or
    holds other bytes now."""
    updated = await conn.fetchval(
        "UPDATE haut_images SET status = 'failed', quality_feedback = $3, problems = $4,"
        " analysed_at = now() WHERE id = $1 AND sha256 = $2 RETURNING true",
        image_id,
        sha256,
        feedback,
        problems,
    )
    return bool(updated)


async def remove_haut_image(
    conn: asyncpg.Connection, image_id: uuid.UUID, sha256: str | None
) -> bool:
    """Delete an image (its aux rows go with it) if it still holds ``sha256`` (None: if it is
    still pending); True when deleted."""
    deleted = await conn.fetchval(
        "DELETE FROM haut_images WHERE id = $1"
        " AND (sha256 = $2 OR ($2::text IS NULL AND status = 'pending')) RETURNING true",
        image_id,
        sha256,
    )
    return bool(deleted)


async def forget_abandoned_uploads(conn: asyncpg.Connection, grace_seconds: float) -> int:
    """Delete pending images whose upload URL expired more than ``grace_seconds`` ago (their
    upload can never complete), and the uncomputed batches that leaves empty; returns how many
    images. Pending images hold no blob, so no bytes are involved."""
    async with conn.transaction():
        rows = await conn.fetch(
            "DELETE FROM haut_images WHERE status = 'pending'"
            " AND upload_expires_at < now() - make_interval(secs => $1) RETURNING batch_id",
            float(grace_seconds),
        )
        batches = list({row["batch_id"] for row in rows})
        if batches:
            await conn.execute(
                "DELETE FROM image_batches b WHERE b.id = ANY($1::uuid[])"
                " AND b.computed_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM haut_images i WHERE i.batch_id = b.id)",
                batches,
            )
    return len(rows)
