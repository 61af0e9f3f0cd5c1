"""The Haut.ai-style API's SQL: datasets, subjects, image batches, images and their aux images
(the tables keep their first names: ``haut_images`` …)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, TypeVar

import asyncpg

from services.ingest.content_checks import Content
from services.ingest.domain import Blob
from services.ingest.hautai.domain import AnalysisOutcome

T = TypeVar("T")


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
class HautaiImage:
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
) -> list[HautaiImage]:
    """Close a batch for compute with ``app_args``: its uploaded images become ``computing``;
    returns them (call it holding the batch ``FOR UPDATE``)."""
    await conn.execute(
        "UPDATE image_batches SET computed_at = now(), app_args = $2 WHERE id = $1",
        batch_id,
        app_args,
    )
    rows = await conn.fetch(
        "UPDATE haut_images SET status = 'computing' WHERE batch_id = $1 AND status = 'uploaded'"
        f" RETURNING {_columns(HautaiImage)}",
        batch_id,
    )
    return [HautaiImage(**row) for row in rows]


async def add_image(
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
) -> HautaiImage:
    """Create a pending image (its bytes arrive through its signed upload URL)."""
    row = await conn.fetchrow(
        "INSERT INTO haut_images (id, account_id, subject_id, batch_id, image_type_id, side_id,"
        " light_id, name, meta, status, upload_expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10)"
        f" RETURNING {_columns(HautaiImage)}",
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
    return HautaiImage(**row)


async def image(
    conn: asyncpg.Connection, account_id: uuid.UUID | None, image_id: uuid.UUID, lock: str = ""
) -> HautaiImage | None:
    """The image ``image_id`` (the company's, when ``account_id`` is given); ``lock``
    (``FOR UPDATE``) locks it until the transaction ends."""
    assert lock in {"", "FOR UPDATE"}
    return await _one(
        conn,
        HautaiImage,
        f"SELECT {_columns(HautaiImage)} FROM haut_images WHERE id = $1"
        f" AND ($2::uuid IS NULL OR account_id = $2) {lock}",
        image_id,
        account_id,
    )


async def images_of_subject(
    conn: asyncpg.Connection, account_id: uuid.UUID, subject_id: uuid.UUID, query: ListQuery
) -> tuple[list[HautaiImage], int]:
    """A page of a subject's images and how many there are."""
    return await _page(
        conn,
        HautaiImage,
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


async def original(conn: asyncpg.Connection, image_id: uuid.UUID) -> Blob | None:
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


async def remove_image(conn: asyncpg.Connection, image_id: uuid.UUID, sha256: str | None) -> bool:
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
