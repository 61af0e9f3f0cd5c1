"""SQL of reports: a report, its snapshots, and the snap requests it is assembled from."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from services.reports.domain import Report, SnapInput, Snapshot

REPORT_COLUMNS = (
    "r.id, r.account_id, r.project, r.sha, r.link, r.message, r.partial, r.nonce,"
    " r.completed_at, r.created_at, r.revision, r.cloned_from, r.skipped,"
    " r.complete_when_rendered, r.render_errors,"
    " (SELECT count(*) FROM snapshots s WHERE s.report_id = r.id)::int AS snapshot_count"
)


def report_of(row: asyncpg.Record | None) -> Report | None:
    """A reports row (selected with :data:`REPORT_COLUMNS`) as a Report (None for no row)."""
    if row is None:
        return None
    values = dict(row)
    values["account_id"] = str(values["account_id"])
    return Report(**values)


async def report(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str, *, lock: bool = False
) -> Report | None:
    """The report of (account, project, sha)."""
    suffix = " FOR UPDATE OF r" if lock else ""
    row = await conn.fetchrow(
        f"SELECT {REPORT_COLUMNS} FROM reports r"
        f" WHERE r.account_id = $1 AND r.project = $2 AND r.sha = $3{suffix}",
        uuid.UUID(account_id),
        project,
        sha,
    )
    return report_of(row)


async def report_by_id(conn: asyncpg.Connection, report_id: int) -> Report | None:
    """A report by its id."""
    row = await conn.fetchrow(f"SELECT {REPORT_COLUMNS} FROM reports r WHERE r.id = $1", report_id)
    return report_of(row)


async def first_report(
    conn: asyncpg.Connection, account_id: str, project: str, shas: Sequence[str]
) -> Report | None:
    """The first of ``shas`` (in their order) that has a complete report."""
    row = await conn.fetchrow(
        f"SELECT {REPORT_COLUMNS} FROM reports r"
        " JOIN unnest($3::text[]) WITH ORDINALITY AS wanted(sha, n) ON wanted.sha = r.sha"
        " WHERE r.account_id = $1 AND r.project = $2 AND r.completed_at IS NOT NULL"
        " ORDER BY wanted.n LIMIT 1",
        uuid.UUID(account_id),
        project,
        list(shas),
    )
    return report_of(row)


async def start_report(
    conn: asyncpg.Connection,
    account_id: str,
    project: str,
    sha: str,
    *,
    link: str | None,
    message: str | None,
    partial: bool,
    nonce: str | None = None,
    cloned_from: int | None = None,
    awaiting_renders: bool = False,
) -> int:
    """Create the report, or empty an existing one to be written again; its id.

    A report posted whole is complete at once; a partial one stays open until completed, and
    one ``awaiting_renders`` until its last pending snap request finishes.
    """
    report_id = await conn.fetchval(
        "INSERT INTO reports (account_id, project, sha, link, message, partial, nonce,"
        " completed_at, cloned_from, complete_when_rendered)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 OR $9 THEN NULL ELSE now() END, $8,"
        " $9)"
        " ON CONFLICT (account_id, project, sha) DO UPDATE SET link = EXCLUDED.link,"
        " message = EXCLUDED.message, partial = EXCLUDED.partial, nonce = EXCLUDED.nonce,"
        " completed_at = EXCLUDED.completed_at, cloned_from = EXCLUDED.cloned_from,"
        " complete_when_rendered = EXCLUDED.complete_when_rendered, render_errors = '[]',"
        " skipped = '[]', revision = reports.revision + 1"
        " RETURNING id",
        uuid.UUID(account_id),
        project,
        sha,
        link,
        message,
        partial,
        nonce,
        cloned_from,
        awaiting_renders,
    )
    await conn.execute("DELETE FROM snapshots WHERE report_id = $1", report_id)
    await conn.execute("DELETE FROM report_requests WHERE report_id = $1", report_id)
    return report_id


async def amend_report(
    conn: asyncpg.Connection, report_id: int, link: str | None, message: str | None
) -> None:
    """Note a partial's arrival (a newer link or message wins)."""
    await conn.execute(
        "UPDATE reports SET link = coalesce($2, link), message = coalesce($3, message),"
        " revision = revision + 1 WHERE id = $1",
        report_id,
        link,
        message,
    )


async def complete_report(
    conn: asyncpg.Connection, report_id: int, skipped: list[list[str]] | None = None
) -> None:
    """Mark a partial report complete."""
    await conn.execute(
        "UPDATE reports SET completed_at = now(), revision = revision + 1,"
        " skipped = coalesce($2::jsonb, skipped) WHERE id = $1",
        report_id,
        skipped,
    )


async def complete_report_later(
    conn: asyncpg.Connection, report_id: int, skipped: list[list[str]] | None = None
) -> None:
    """Complete the report when its last pending render finishes (keeping ``skipped``)."""
    await conn.execute(
        "UPDATE reports SET complete_when_rendered = true, skipped = coalesce($2::jsonb, skipped)"
        " WHERE id = $1",
        report_id,
        skipped,
    )


async def add_snapshots(
    conn: asyncpg.Connection,
    report_id: int,
    snaps: Sequence[SnapInput],
    images: dict[str, dict[str, Any]],
) -> None:
    """Write snapshots into a report; one with the same (component, variant, target) as an
    earlier one replaces it."""
    if not snaps:
        return
    start = await conn.fetchval(
        "SELECT coalesce(max(position) + 1, 0) FROM snapshots WHERE report_id = $1", report_id
    )
    latest: dict[tuple[str, str, str], SnapInput] = {}
    for snap in snaps:
        latest.pop(snap.key, None)
        latest[snap.key] = snap
    rows = list(latest.values())
    await conn.execute(
        "INSERT INTO snapshots (report_id, component, variant, target, image_hash, sha256,"
        " blob_key, width, height, position)"
        " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::int[], $9::int[], $10::int[])"
        " ON CONFLICT (report_id, component, variant, target) DO UPDATE SET"
        " image_hash = EXCLUDED.image_hash, sha256 = EXCLUDED.sha256,"
        " blob_key = EXCLUDED.blob_key, width = EXCLUDED.width, height = EXCLUDED.height",
        report_id,
        [s.component for s in rows],
        [s.variant for s in rows],
        [s.target for s in rows],
        [s.image_hash for s in rows],
        [images[s.image_hash]["sha256"] for s in rows],
        [images[s.image_hash]["key"] for s in rows],
        [s.width for s in rows],
        [s.height for s in rows],
        list(range(start, start + len(rows))),
    )


async def copy_snapshots(conn: asyncpg.Connection, source_id: int, target_id: int) -> None:
    """Copy every snapshot of one report into another (a clone)."""
    await conn.execute(
        "INSERT INTO snapshots (report_id, component, variant, target, image_hash, sha256,"
        " blob_key, width, height, position)"
        " SELECT $2, component, variant, target, image_hash, sha256, blob_key, width, height,"
        " position FROM snapshots WHERE report_id = $1",
        source_id,
        target_id,
    )


async def snapshots(conn: asyncpg.Connection, report_id: int, image_base: str) -> list[Snapshot]:
    """A report's snapshots in the order they were posted."""
    rows = await conn.fetch(
        "SELECT id, component, variant, target, $2 || image_hash AS url, sha256, blob_key,"
        " width, height FROM snapshots WHERE report_id = $1 ORDER BY position",
        report_id,
        image_base,
    )
    return [Snapshot(**dict(row)) for row in rows]


async def snapshot_page(
    conn: asyncpg.Connection, report_id: int, image_base: str, *, limit: int, offset: int
) -> list[Snapshot]:
    """A window of a report's snapshots, grouped by component (by name, then in the order they
    were posted), so that a page of a report with thousands of them stays small and a
    component's snapshots stay together across pages."""
    rows = await conn.fetch(
        "SELECT id, component, variant, target, $2 || image_hash AS url, sha256, blob_key,"
        " width, height FROM snapshots WHERE report_id = $1"
        " ORDER BY component, position LIMIT $3 OFFSET $4",
        report_id,
        image_base,
        limit,
        offset,
    )
    return [Snapshot(**dict(row)) for row in rows]


async def latest_snapshot(
    conn: asyncpg.Connection,
    account_id: str,
    project: str,
    key: tuple[str, str, str],
    image_base: str,
) -> Snapshot | None:
    """The snapshot of ``key`` in the account's most recently completed report of a project."""
    row = await conn.fetchrow(
        "SELECT s.id, s.component, s.variant, s.target, $6 || s.image_hash AS url, s.sha256,"
        " s.blob_key, s.width, s.height FROM snapshots s JOIN reports r ON r.id = s.report_id"
        " WHERE r.account_id = $1 AND r.project = $2 AND r.completed_at IS NOT NULL"
        " AND s.component = $3 AND s.variant = $4 AND s.target = $5"
        " ORDER BY r.completed_at DESC, r.id DESC LIMIT 1",
        uuid.UUID(account_id),
        project,
        *key,
        image_base,
    )
    return Snapshot(**dict(row)) if row else None


async def account_snapshots(
    conn: asyncpg.Connection, account_id: str, ids: Sequence[int], image_base: str
) -> dict[int, Snapshot]:
    """The snapshots among ``ids`` that belong to the account's reports."""
    rows = await conn.fetch(
        "SELECT s.id, s.component, s.variant, s.target, $3 || s.image_hash AS url, s.sha256,"
        " s.blob_key, s.width, s.height FROM snapshots s JOIN reports r ON r.id = s.report_id"
        " WHERE r.account_id = $1 AND s.id = ANY($2::bigint[])",
        uuid.UUID(account_id),
        list(ids),
        image_base,
    )
    found = {row["id"]: Snapshot(**dict(row)) for row in rows}
    if len(found) < len(set(ids)):
        # A snapshot of an overwritten report lives on in the comparisons that matched it.
        missing = [i for i in ids if i not in found]
        rows = await conn.fetch(
            "SELECT DISTINCT ON (side->>'id') side FROM comparison_entries e"
            " JOIN comparisons c ON c.id = e.comparison_id,"
            " LATERAL (VALUES (e.before), (e.after)) AS sides(side)"
            " WHERE c.account_id = $1 AND side IS NOT NULL"
            " AND (side->>'id')::bigint = ANY($2::bigint[])",
            uuid.UUID(account_id),
            missing,
        )
        for row in rows:
            snapshot = Snapshot.from_record(row["side"])
            found[snapshot.id] = snapshot
    return found


async def attach_requests(
    conn: asyncpg.Connection, report_id: int, ids: Iterable[int], pending: Iterable[int] = ()
) -> list[int]:
    """Note which snap requests a report was built from (those in ``pending`` still to be
    applied when they finish); the ids that were new to it."""
    waiting = set(pending)
    wanted = sorted(set(ids))
    rows = await conn.fetch(
        "INSERT INTO report_requests (report_id, request_id, applied)"
        " SELECT $1, id, NOT waiting FROM unnest($2::bigint[], $3::boolean[]) AS t(id, waiting)"
        " ON CONFLICT DO NOTHING RETURNING request_id",
        report_id,
        wanted,
        [rid in waiting for rid in wanted],
    )
    return [row["request_id"] for row in rows]


async def reports_waiting_for(conn: asyncpg.Connection, request_id: int) -> list[int]:
    """The reports that wait for ``request_id``'s snapshots, locked, marked applied."""
    rows = await conn.fetch(
        "UPDATE report_requests SET applied = true WHERE request_id = $1 AND NOT applied"
        " RETURNING report_id",
        request_id,
    )
    ids = sorted(row["report_id"] for row in rows)
    if ids:
        await conn.execute("SELECT 1 FROM reports WHERE id = ANY($1::bigint[]) FOR UPDATE", ids)
    return ids


async def requests_pending(conn: asyncpg.Connection, report_id: int) -> int:
    """How many of a report's snap requests are still rendering."""
    return await conn.fetchval(
        "SELECT count(*) FROM report_requests WHERE report_id = $1 AND NOT applied", report_id
    )


async def add_render_errors(
    conn: asyncpg.Connection, report_id: int, failures: list[dict[str, Any]]
) -> None:
    """Keep renders that failed with the report they were for."""
    if failures:
        await conn.execute(
            "UPDATE reports SET render_errors = render_errors || $2::jsonb WHERE id = $1",
            report_id,
            failures,
        )
