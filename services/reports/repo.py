"""All of reports's SQL (asyncpg, schema ``reports``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from services.reports.domain import (
    Comparison,
    Entry,
    Job,
    PixelResult,
    Report,
    SnapInput,
    SnapRequest,
    Snapshot,
    ignored_pair,
)

_REPORT_COLUMNS = (
    "r.id, r.account_id, r.project, r.sha, r.link, r.message, r.partial, r.nonce,"
    " r.completed_at, r.created_at, r.revision, r.cloned_from, r.skipped,"
    " r.complete_when_rendered, r.render_errors,"
    " (SELECT count(*) FROM snapshots s WHERE s.report_id = r.id)::int AS snapshot_count"
)


def _report(row: asyncpg.Record | None) -> Report | None:
    if row is None:
        return None
    values = dict(row)
    values["account_id"] = str(values["account_id"])
    return Report(**values)


def _comparison(row: asyncpg.Record | None) -> Comparison | None:
    if row is None:
        return None
    values = dict(row)
    values["account_id"] = str(values["account_id"])
    values["reviewed_by"] = str(values["reviewed_by"]) if values["reviewed_by"] else None
    return Comparison(**values)


def _job(row: asyncpg.Record | None) -> Job | None:
    if row is None:
        return None
    values = dict(row)
    values["account_id"] = str(values["account_id"])
    return Job(**values)


# --- reports ----------------------------------------------------------------------------------


async def report(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str, *, lock: bool = False
) -> Report | None:
    """The report of (account, project, sha)."""
    suffix = " FOR UPDATE OF r" if lock else ""
    row = await conn.fetchrow(
        f"SELECT {_REPORT_COLUMNS} FROM reports r"
        f" WHERE r.account_id = $1 AND r.project = $2 AND r.sha = $3{suffix}",
        uuid.UUID(account_id),
        project,
        sha,
    )
    return _report(row)


async def report_by_id(conn: asyncpg.Connection, report_id: int) -> Report | None:
    """A report by its id."""
    row = await conn.fetchrow(f"SELECT {_REPORT_COLUMNS} FROM reports r WHERE r.id = $1", report_id)
    return _report(row)


async def first_report(
    conn: asyncpg.Connection, account_id: str, project: str, shas: Sequence[str]
) -> Report | None:
    """The first of ``shas`` (in their order) that has a complete report."""
    row = await conn.fetchrow(
        f"SELECT {_REPORT_COLUMNS} FROM reports r"
        " JOIN unnest($3::text[]) WITH ORDINALITY AS wanted(sha, n) ON wanted.sha = r.sha"
        " WHERE r.account_id = $1 AND r.project = $2 AND r.completed_at IS NOT NULL"
        " ORDER BY wanted.n LIMIT 1",
        uuid.UUID(account_id),
        project,
        list(shas),
    )
    return _report(row)


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


# --- snap requests ----------------------------------------------------------------------------


async def create_snap_request(
    conn: asyncpg.Connection, account_id: str, snaps: list[dict[str, Any]]
) -> int:
    """Store a batch of resolved snapshots; its request id."""
    return await conn.fetchval(
        "INSERT INTO snap_requests (account_id, snaps) VALUES ($1, $2) RETURNING id",
        uuid.UUID(account_id),
        snaps,
    )


async def snap_requests(
    conn: asyncpg.Connection, account_id: str, ids: Sequence[int]
) -> dict[int, SnapRequest]:
    """The account's snap requests among ``ids``: id → request."""
    rows = await conn.fetch(
        "SELECT id, state, snaps, request_type, target_name, error FROM snap_requests"
        " WHERE account_id = $1 AND id = ANY($2::bigint[])",
        uuid.UUID(account_id),
        list(ids),
    )
    return {row["id"]: SnapRequest(**dict(row)) for row in rows}


async def create_render_request(
    conn: asyncpg.Connection,
    account_id: str,
    request_type: str,
    target_name: str,
    payload_md5: str,
    payload: Any,
    error: str | None = None,
    reuse: bool = True,
) -> tuple[int, bool]:
    """A pending snap request to render, or (with ``reuse``) the earlier one of the same type,
    target and payload that did not fail; ``(id, created)``. With ``error`` it is failed at
    once (a target no engine here renders)."""
    account = uuid.UUID(account_id)
    # One at a time per (account, type, target, payload), so two identical requests racing
    # end on one row.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        f"snap-request:{account}:{request_type}:{target_name}:{payload_md5}",
    )
    earlier = await conn.fetchval(
        "SELECT id FROM snap_requests WHERE account_id = $1 AND request_type = $2"
        " AND target_name = $3 AND payload_md5 = $4 AND state <> 'failed'"
        " ORDER BY id DESC LIMIT 1",
        account,
        request_type,
        target_name,
        payload_md5,
    )
    if earlier is not None and error is None and reuse:
        return earlier, False
    created = await conn.fetchval(
        "INSERT INTO snap_requests (account_id, snaps, state, request_type, target_name,"
        " payload_md5, payload, error, finished_at)"
        " VALUES ($1, '[]', CASE WHEN $6::text IS NULL THEN 'pending' ELSE 'failed' END,"
        " $2, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL ELSE now() END) RETURNING id",
        account,
        request_type,
        target_name,
        payload_md5,
        payload,
        error,
    )
    return created, True


async def render_request(
    conn: asyncpg.Connection, account_id: str, request_id: int
) -> asyncpg.Record | None:
    """What a renderer needs of a request: its state, type, target and payload."""
    return await conn.fetchrow(
        "SELECT state, request_type, target_name, payload FROM snap_requests"
        " WHERE account_id = $1 AND id = $2 AND request_type IS NOT NULL",
        uuid.UUID(account_id),
        request_id,
    )


async def finish_render_request(
    conn: asyncpg.Connection,
    account_id: str,
    request_id: int,
    snaps: list[dict[str, Any]] | None,
    error: str | None,
) -> asyncpg.Record | None:
    """Record a pending request's outcome (its snaps, each tagged with the request's target,
    or an error); ``(target_name, snaps)`` as stored, or None when it was not pending (a
    repeated outcome changes nothing)."""
    return await conn.fetchrow(
        "UPDATE snap_requests SET state = CASE WHEN $4::text IS NULL THEN 'done' ELSE 'failed'"
        " END, snaps = CASE WHEN $3::jsonb IS NULL THEN snaps ELSE coalesce((SELECT"
        " jsonb_agg(e || jsonb_build_object('target', target_name))"
        " FROM jsonb_array_elements($3::jsonb) AS e), '[]'::jsonb) END,"
        " error = $4, finished_at = now()"
        " WHERE account_id = $1 AND id = $2 AND state = 'pending' RETURNING target_name, snaps",
        uuid.UUID(account_id),
        request_id,
        snaps,
        error,
    )


async def stale_render_requests(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int = 100
) -> list[asyncpg.Record]:
    """Requests pending longer than ``older_than_seconds`` (no renderer finished them: a poison
    request dead-lettered, renderers gone), locked for the caller's transaction."""
    return await conn.fetch(
        "SELECT id, account_id FROM snap_requests WHERE state = 'pending'"
        " AND created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        older_than_seconds,
        limit,
    )


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


async def complete_when_rendered(conn: asyncpg.Connection, report_id: int) -> None:
    """Complete the report when its last pending render finishes."""
    await conn.execute("UPDATE reports SET complete_when_rendered = true WHERE id = $1", report_id)


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


# --- comparisons ------------------------------------------------------------------------------


async def comparison(
    conn: asyncpg.Connection, account_id: str, project: str, sha1: str, sha2: str
) -> Comparison | None:
    """The comparison of two shas in a project."""
    row = await conn.fetchrow(
        "SELECT * FROM comparisons WHERE account_id = $1 AND project = $2 AND sha1 = $3"
        " AND sha2 = $4",
        uuid.UUID(account_id),
        project,
        sha1,
        sha2,
    )
    return _comparison(row)


async def comparison_by_id(
    conn: asyncpg.Connection, comparison_id: int, *, lock: bool = False
) -> Comparison | None:
    """A comparison by id (``lock`` holds it for this transaction)."""
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(f"SELECT * FROM comparisons WHERE id = $1{suffix}", comparison_id)
    return _comparison(row)


async def schedule_comparison(
    conn: asyncpg.Connection,
    account_id: str,
    project: str,
    sha1: str,
    sha2: str,
    *,
    fallback_shas: list[str],
    link: str | None,
    message: str | None,
    notify: list[str],
    threshold: float,
    include_anti_aliasing: bool,
) -> int:
    """Create the comparison, or reset an existing one of the same shas to run again."""
    comparison_id = await conn.fetchval(
        "INSERT INTO comparisons (account_id, project, sha1, sha2, fallback_shas, link, message,"
        " notify, state, threshold, include_anti_aliasing)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'scheduled', $9, $10)"
        " ON CONFLICT (account_id, project, sha1, sha2) DO UPDATE SET"
        " fallback_shas = EXCLUDED.fallback_shas, link = EXCLUDED.link,"
        " message = EXCLUDED.message, notify = EXCLUDED.notify, state = 'scheduled',"
        " threshold = EXCLUDED.threshold, include_anti_aliasing = EXCLUDED.include_anti_aliasing,"
        " before_report_id = NULL, after_report_id = NULL, before_sha = NULL,"
        " before_revision = NULL, after_revision = NULL, equal = NULL, summary = NULL,"
        " review = NULL, reviewed_by = NULL, reviewed_at = NULL, completed_at = NULL"
        " RETURNING id",
        uuid.UUID(account_id),
        project,
        sha1,
        sha2,
        fallback_shas,
        link,
        message,
        notify,
        threshold,
        include_anti_aliasing,
    )
    await conn.execute("DELETE FROM comparison_entries WHERE comparison_id = $1", comparison_id)
    return comparison_id


async def start_diffing(
    conn: asyncpg.Connection,
    comparison_id: int,
    before: Report,
    after: Report,
    entries: Sequence[Entry],
) -> None:
    """Record what the comparison matched; it now waits for its pending pixel diffs."""
    await conn.execute(
        "UPDATE comparisons SET state = 'diffing', before_report_id = $2, after_report_id = $3,"
        " before_sha = $4, before_revision = $5, after_revision = $6 WHERE id = $1",
        comparison_id,
        before.id,
        after.id,
        before.sha,
        before.revision,
        after.revision,
    )
    await conn.execute(
        "INSERT INTO comparison_entries (comparison_id, position, kind, component, before,"
        " after, ignored, changed_pixels, total_pixels, diff_key, error)"
        " SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[],"
        " $7::bool[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])",
        comparison_id,
        list(range(len(entries))),
        [e.kind for e in entries],
        [e.component for e in entries],
        [e.before.to_record() if e.before else None for e in entries],
        [e.after.to_record() if e.after else None for e in entries],
        [e.ignored for e in entries],
        [e.changed_pixels for e in entries],
        [e.total_pixels for e in entries],
        [e.diff_key for e in entries],
        [e.error for e in entries],
    )
    boxes = [(i, e.bbox) for i, e in enumerate(entries) if e.bbox]
    if boxes:
        await conn.executemany(
            "UPDATE comparison_entries SET bbox = $3 WHERE comparison_id = $1 AND position = $2",
            [(comparison_id, i, bbox) for i, bbox in boxes],
        )


async def pending_pairs(conn: asyncpg.Connection, comparison_id: int) -> list[asyncpg.Record]:
    """The distinct image pairs a comparison still waits for: before/after sha256 and key."""
    return await conn.fetch(
        "SELECT DISTINCT before->>'sha256' AS before_sha256, before->>'blob_key' AS before_key,"
        " after->>'sha256' AS after_sha256, after->>'blob_key' AS after_key"
        " FROM comparison_entries WHERE comparison_id = $1 AND kind = 'pending'",
        comparison_id,
    )


async def settle_pairs(
    conn: asyncpg.Connection, comparison_id: int, results: dict[tuple[str, str], PixelResult]
) -> None:
    """Judge the pending entries whose pair has a result."""
    if not results:
        return
    pairs = list(results.items())
    await conn.execute(
        "UPDATE comparison_entries e SET kind = CASE WHEN r.error IS NOT NULL OR r.changed > 0"
        " THEN 'diff' ELSE 'unchanged' END, changed_pixels = r.changed, total_pixels = r.total,"
        " diff_key = r.diff_key, error = r.error,"
        " bbox = CASE WHEN r.bbox = '' THEN NULL ELSE string_to_array(r.bbox, ',')::int[] END"
        " FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],"
        " $7::text[], $8::text[]) AS r(b, a, changed, total, diff_key, error, bbox)"
        " WHERE e.comparison_id = $1 AND e.kind = 'pending'"
        " AND e.before->>'sha256' = r.b AND e.after->>'sha256' = r.a",
        comparison_id,
        [b for (b, _), _ in pairs],
        [a for (_, a), _ in pairs],
        [r.changed_pixels for _, r in pairs],
        [r.total_pixels for _, r in pairs],
        [r.diff_key for _, r in pairs],
        [r.error for _, r in pairs],
        [",".join(map(str, r.bbox)) if r.bbox else "" for _, r in pairs],
    )


async def kind_counts(conn: asyncpg.Connection, comparison_id: int) -> dict[str, int]:
    """How many entries of each kind a comparison has."""
    rows = await conn.fetch(
        "SELECT kind, count(*)::int AS n FROM comparison_entries WHERE comparison_id = $1"
        " GROUP BY kind",
        comparison_id,
    )
    return {row["kind"]: row["n"] for row in rows}


async def finish_comparison(
    conn: asyncpg.Connection, comparison_id: int, equal: bool, summary: str
) -> None:
    """Record a comparison's outcome."""
    await conn.execute(
        "UPDATE comparisons SET state = 'done', equal = $2, summary = $3, completed_at = now()"
        " WHERE id = $1",
        comparison_id,
        equal,
        summary,
    )


async def entries(
    conn: asyncpg.Connection,
    comparison_id: int,
    kinds: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[Entry]:
    """A comparison's entries in order, optionally of some kinds and a window of them (one
    kind walks the (comparison, kind, position) index)."""
    rows = await conn.fetch(
        "SELECT position, kind, component, before, after, ignored, changed_pixels,"
        " total_pixels, bbox, diff_key, error FROM comparison_entries WHERE comparison_id = $1"
        " AND ($2::text[] IS NULL OR kind = ANY($2::text[]))"
        " ORDER BY position LIMIT $3 OFFSET $4",
        comparison_id,
        list(kinds) if kinds is not None else None,
        limit,
        offset,
    )
    return [
        Entry(
            kind=row["kind"],
            component=row["component"],
            before=Snapshot.from_record(row["before"]) if row["before"] else None,
            after=Snapshot.from_record(row["after"]) if row["after"] else None,
            ignored=row["ignored"],
            changed_pixels=row["changed_pixels"],
            total_pixels=row["total_pixels"],
            bbox=list(row["bbox"]) if row["bbox"] else None,
            diff_key=row["diff_key"],
            error=row["error"],
            position=row["position"],
        )
        for row in rows
    ]


async def entry_diff_key(conn: asyncpg.Connection, comparison_id: int, position: int) -> str | None:
    """The diff image key of one entry of a comparison."""
    return await conn.fetchval(
        "SELECT diff_key FROM comparison_entries WHERE comparison_id = $1 AND position = $2",
        comparison_id,
        position,
    )


async def comparisons_of_sha(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str
) -> list[Comparison]:
    """Comparisons where ``sha`` is the before or the after report, oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM comparisons WHERE account_id = $1 AND project = $2"
        " AND (sha1 = $3 OR sha2 = $3 OR before_sha = $3) ORDER BY created_at, id",
        uuid.UUID(account_id),
        project,
        sha,
    )
    return [c for c in map(_comparison, rows) if c is not None]


async def scheduled_comparisons(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str
) -> list[int]:
    """Ids of comparisons waiting for reports that a newly complete ``sha`` may unblock."""
    rows = await conn.fetch(
        "SELECT id FROM comparisons WHERE account_id = $1 AND project = $2"
        " AND state = 'scheduled' AND (sha1 = $3 OR sha2 = $3 OR $3 = ANY(fallback_shas))",
        uuid.UUID(account_id),
        project,
        sha,
    )
    return [row["id"] for row in rows]


async def review(
    conn: asyncpg.Connection, comparison_id: int, decision: str, user_id: str | None
) -> None:
    """Record a person's decision on a comparison."""
    await conn.execute(
        "UPDATE comparisons SET review = $2, reviewed_by = $3, reviewed_at = now() WHERE id = $1",
        comparison_id,
        decision,
        uuid.UUID(user_id) if user_id else None,
    )


async def known_diffs(
    conn: asyncpg.Connection,
    pairs: Iterable[tuple[str, str]],
    threshold: float,
    include_anti_aliasing: bool,
) -> dict[tuple[str, str], PixelResult]:
    """Pixel diffs already computed for some of ``pairs`` under these options."""
    wanted = list(set(pairs))
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT d.* FROM pixel_diffs d JOIN unnest($1::text[], $2::text[]) AS p(b, a)"
        " ON d.before_sha256 = p.b AND d.after_sha256 = p.a"
        " WHERE d.threshold = $3 AND d.include_anti_aliasing = $4",
        [b for b, _ in wanted],
        [a for _, a in wanted],
        threshold,
        include_anti_aliasing,
    )
    return {
        (row["before_sha256"], row["after_sha256"]): PixelResult(
            changed_pixels=row["changed_pixels"],
            total_pixels=row["total_pixels"],
            bbox=list(row["bbox"]) if row["bbox"] else None,
            diff_key=row["diff_key"],
            error=row["error"],
        )
        for row in rows
    }


async def remember_diffs(
    conn: asyncpg.Connection,
    results: dict[tuple[str, str], PixelResult],
    threshold: float,
    include_anti_aliasing: bool,
) -> None:
    """Keep pixel diffs for later comparisons of the same images."""
    await conn.executemany(
        "INSERT INTO pixel_diffs (before_sha256, after_sha256, threshold, include_anti_aliasing,"
        " changed_pixels, total_pixels, bbox, diff_key, error)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        [
            (
                b,
                a,
                threshold,
                include_anti_aliasing,
                r.changed_pixels,
                r.total_pixels,
                r.bbox,
                r.diff_key,
                r.error,
            )
            for (b, a), r in results.items()
            # An error (an image gone or over a limit) may not last: it is not kept.
            if r.error is None
        ],
    )


# --- ignored diffs ----------------------------------------------------------------------------


async def ignore_diff(
    conn: asyncpg.Connection, account_id: str, first: Snapshot, second: Snapshot
) -> bool:
    """Ignore the diff between two snapshots' images from now on; False when it already was."""
    low, high = ignored_pair(first.sha256, second.sha256)
    inserted = await conn.fetchval(
        "INSERT INTO ignored_diffs (account_id, first_sha256, second_sha256, component, variant,"
        " target, snapshot1_id, snapshot2_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT DO NOTHING RETURNING true",
        uuid.UUID(account_id),
        low,
        high,
        second.component,
        second.variant,
        second.target,
        first.id,
        second.id,
    )
    return bool(inserted)


async def ignored_pairs(
    conn: asyncpg.Connection, account_id: str, pairs: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of ``pairs`` (in either order) the account ignores."""
    keys = list({ignored_pair(a, b) for a, b in pairs})
    if not keys:
        return set()
    rows = await conn.fetch(
        "SELECT first_sha256, second_sha256 FROM ignored_diffs"
        " JOIN unnest($2::text[], $3::text[]) AS p(f, s)"
        " ON first_sha256 = p.f AND second_sha256 = p.s WHERE account_id = $1",
        uuid.UUID(account_id),
        [f for f, _ in keys],
        [s for _, s in keys],
    )
    return {(row["first_sha256"], row["second_sha256"]) for row in rows}


async def ignores_a_diff_of(conn: asyncpg.Connection, comparison: Comparison) -> bool:
    """True when an ignored diff now covers one of a comparison's diffs (it is out of date)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM comparison_entries e JOIN ignored_diffs i"
            " ON i.account_id = $2 AND i.first_sha256 = least(e.before->>'sha256' COLLATE \"C\","
            " e.after->>'sha256') AND i.second_sha256 = greatest(e.before->>'sha256' COLLATE"
            " \"C\", e.after->>'sha256') WHERE e.comparison_id = $1 AND e.kind = 'diff')",
            comparison.id,
            uuid.UUID(comparison.account_id),
        )
    )


async def flaky_snapshots(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    component: str | None,
    variant: str | None,
    target: str | None,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """Ignored diffs, newest first: the snapshots a team judged flaky."""
    return await conn.fetch(
        "SELECT component, variant, target, snapshot1_id, snapshot2_id, created_at"
        " FROM ignored_diffs WHERE account_id = $1"
        " AND ($2::text IS NULL OR component = $2) AND ($3::text IS NULL OR variant = $3)"
        " AND ($4::text IS NULL OR target = $4)"
        " ORDER BY created_at DESC, snapshot2_id DESC LIMIT $5 OFFSET $6",
        uuid.UUID(account_id),
        component,
        variant,
        target,
        limit,
        offset,
    )


# --- jobs -------------------------------------------------------------------------------------


async def job(
    conn: asyncpg.Connection, account_id: str, sha1: str, sha2: str, project: str | None
) -> Job | None:
    """The job of two shas for a project (``None``: the orchestration job)."""
    row = await conn.fetchrow(
        "SELECT * FROM jobs WHERE account_id = $1 AND sha1 = $2 AND sha2 = $3"
        " AND project IS NOT DISTINCT FROM $4",
        uuid.UUID(account_id),
        sha1,
        sha2,
        project,
    )
    return _job(row)


async def job_by_id(conn: asyncpg.Connection, job_id: int) -> Job | None:
    """A job by id."""
    return _job(await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id))


async def children(conn: asyncpg.Connection, job_id: int) -> list[Job]:
    """The per-project jobs of an orchestration job."""
    rows = await conn.fetch("SELECT * FROM jobs WHERE parent_id = $1 ORDER BY id", job_id)
    return [j for j in map(_job, rows) if j is not None]


async def create_job(
    conn: asyncpg.Connection,
    account_id: str,
    sha1: str,
    sha2: str,
    project: str | None,
    *,
    parent_id: int | None,
    link: str | None,
    message: str | None,
) -> Job:
    """Create a job, or return the existing one of the same shas and project (clients retry)."""
    row = await conn.fetchrow(
        "INSERT INTO jobs (account_id, sha1, sha2, project, parent_id, link, message)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING *",
        uuid.UUID(account_id),
        sha1,
        sha2,
        project,
        parent_id,
        link,
        message,
    )
    if row is None:
        existing = await job(conn, account_id, sha1, sha2, project)
        assert existing is not None  # the conflict was with it
        if parent_id is not None and existing.parent_id is None:
            await conn.execute(
                "UPDATE jobs SET parent_id = $2 WHERE id = $1", existing.id, parent_id
            )
            existing = await job_by_id(conn, existing.id)
            assert existing is not None
        return existing
    created = _job(row)
    assert created is not None
    return created


async def cancel_job(
    conn: asyncpg.Connection, job_id: int, status: str, message: str | None
) -> None:
    """Settle a job as cancelled with the status the caller chose."""
    await conn.execute(
        "UPDATE jobs SET cancelled_status = $2, cancel_message = $3, updated_at = now()"
        " WHERE id = $1",
        job_id,
        status,
        message,
    )


async def skipped_shas(
    conn: asyncpg.Connection, account_id: str, project: str, shas: Sequence[str]
) -> set[str]:
    """Which of ``shas`` were skipped in a project."""
    rows = await conn.fetch(
        "SELECT sha FROM skips WHERE account_id = $1 AND project = $2 AND sha = ANY($3::text[])",
        uuid.UUID(account_id),
        project,
        list(shas),
    )
    return {row["sha"] for row in rows}


async def skip(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str, label: str
) -> Any:
    """Record a skipped sha; when it was recorded."""
    return await conn.fetchval(
        "INSERT INTO skips (account_id, project, sha, label) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (account_id, project, sha) DO UPDATE SET label = EXCLUDED.label"
        " RETURNING created_at",
        uuid.UUID(account_id),
        project,
        sha,
        label,
    )


# --- subscriptions ----------------------------------------------------------------------------


async def subscribe(
    conn: asyncpg.Connection, account_id: str, component: str, emails: Sequence[str]
) -> list[str]:
    """Add subscribers; an address that unsubscribed stays so. The addresses now subscribed."""
    await conn.execute(
        "INSERT INTO subscriptions (account_id, component, email)"
        " SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
        uuid.UUID(account_id),
        component,
        list(emails),
    )
    return await subscribers(conn, account_id, [component])


async def unsubscribe_many(
    conn: asyncpg.Connection, account_id: str, component: str, emails: Sequence[str]
) -> list[str]:
    """Remove subscribers (the unsubscribed ones are kept, to stay unsubscribed)."""
    await conn.execute(
        "DELETE FROM subscriptions WHERE account_id = $1 AND component = $2"
        " AND email = ANY($3::text[]) AND unsubscribed_at IS NULL",
        uuid.UUID(account_id),
        component,
        list(emails),
    )
    return await subscribers(conn, account_id, [component])


async def opt_out(conn: asyncpg.Connection, account_id: str, component: str, email: str) -> None:
    """The person behind ``email`` left the component's subscription (from a mail's link)."""
    await conn.execute(
        "INSERT INTO subscriptions (account_id, component, email, unsubscribed_at)"
        " VALUES ($1, $2, $3, now()) ON CONFLICT (account_id, component, email)"
        " DO UPDATE SET unsubscribed_at = coalesce(subscriptions.unsubscribed_at, now())",
        uuid.UUID(account_id),
        component,
        email,
    )


async def subscribers(
    conn: asyncpg.Connection, account_id: str, components: Sequence[str]
) -> list[str]:
    """Addresses subscribed (and not unsubscribed) to any of ``components``."""
    rows = await conn.fetch(
        "SELECT DISTINCT email FROM subscriptions WHERE account_id = $1"
        " AND component = ANY($2::text[]) AND unsubscribed_at IS NULL ORDER BY email",
        uuid.UUID(account_id),
        list(components),
    )
    return [row["email"] for row in rows]


async def subscriptions_of(
    conn: asyncpg.Connection, account_id: str, emails: Sequence[str], components: Sequence[str]
) -> dict[str, list[str]]:
    """For each address, the components among ``components`` it is subscribed to."""
    rows = await conn.fetch(
        "SELECT email, array_agg(component ORDER BY component) AS components FROM subscriptions"
        " WHERE account_id = $1 AND email = ANY($2::text[]) AND component = ANY($3::text[])"
        " AND unsubscribed_at IS NULL GROUP BY email",
        uuid.UUID(account_id),
        list(emails),
        list(components),
    )
    return {row["email"]: list(row["components"]) for row in rows}


async def delivered(conn: asyncpg.Connection, event_id: str) -> set[str]:
    """Addresses already mailed for a ``comparison.completed`` event."""
    rows = await conn.fetch(
        "SELECT email FROM mail_deliveries WHERE completed_event = $1", uuid.UUID(event_id)
    )
    return {row["email"] for row in rows}


async def record_delivery(
    conn: asyncpg.Connection, comparison_id: int, event_id: str, email: str, outcome: str
) -> None:
    """Note that an address was mailed (or refused) for an event."""
    await conn.execute(
        "INSERT INTO mail_deliveries (comparison_id, completed_event, email, outcome)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        comparison_id,
        uuid.UUID(event_id),
        email,
        outcome,
    )


# --- pages ------------------------------------------------------------------------------------


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
